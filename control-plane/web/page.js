// The frame of every page: who is signed in (top right), and the sentence and link shown
// when a page needs sign-in.

import { me, post } from "./api.js";
import { $, button, clear, h, notice } from "./ui.js";

export async function whoami() {
  let who = { signedIn: false, tickets: [] };
  try {
    who = await me();
  } catch {
    // Not signed in or no API: pages decide what that means.
  }
  const slot = $("#who");
  if (slot) {
    if (who.signedIn) {
      clear(
        slot,
        h("span", { class: "muted" }, who.name || who.email),
        button("Sign out", async () => {
          await post("/api/signout").catch(() => {});
          location.href = "/";
        }, { class: "link" }),
      );
    } else {
      clear(slot, h("a", { href: signInHref() }, "Sign in"));
    }
  }
  return who;
}

export function signInHref() {
  return `/?next=${encodeURIComponent(location.pathname + location.search)}`;
}

// Show a refusal; for "sign in first" add the way to do it.
export function refuse(e) {
  notice(e.message || String(e));
  if (e.status === 401) {
    const box = $("#notice");
    box.append(" ", h("a", { href: signInHref() }, "Sign in or register"));
  }
}

const REFUSAL_HEADINGS = {
  401: "Sign in to continue",
  403: "This is not open to you",
  404: "We could not find this",
  429: "Too many tries",
};
const REFUSAL_HINTS = {
  401: "Joining an event needs a ticket: sign in or register with the email address you used.",
  403: "If you think you should be let in, ask the organiser or host who gave you the link.",
  404: "Check the link: it may be mistyped, or what it pointed to was removed.",
  429: "Wait a few minutes, then try again.",
};

// A page that cannot be shown to this person: what happened, why, and where to go next,
// instead of an empty page under one red line.
export function refusedPage(e) {
  notice(null);
  const status = e.status || 0;
  clear(
    main(),
    h(
      "div",
      { class: "card narrow refusal", id: "refused" },
      h("h2", {}, REFUSAL_HEADINGS[status] || (status === 503 ? "Not open right now" : "This page cannot be shown")),
      h("p", {}, e.message || String(e)),
      h("p", { class: "muted" }, REFUSAL_HINTS[status] || "Try again in a moment; if it keeps happening, tell the organisers."),
      h(
        "div",
        { class: "form-row" },
        status === 401 ? h("a", { class: "button primary", href: signInHref() }, "Sign in or register") : null,
        h("a", { class: "button", href: "/" }, "Go to the start page"),
      ),
    ),
  );
}

export function main() {
  return $("#app");
}

export function onLeave(fn) {
  window.addEventListener("pagehide", fn);
}
