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

export function main() {
  return $("#app");
}

export function onLeave(fn) {
  window.addEventListener("pagehide", fn);
}
