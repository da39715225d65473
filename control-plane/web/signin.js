// The start page `/`: sign in with an emailed link (no password), or register for an event
// (built-in registration); once signed in, your events.

import { enc, get, post, query } from "./api.js";
import { main, refuse, whoami } from "./page.js";
import { clear, h, notice, setTitle } from "./ui.js";

// Why an emailed sign-in link did not sign you in (`/?error=<code>` from the server).
// Why a sign-in with the identity provider did not sign you in (`/?error=oidc_…`); the server's
// `OidcRefusal` says the same.
const linkErrors = {
  link_invalid: "That sign-in link has expired or was already used. Ask for a new one below.",
  too_many_attempts: "Too many attempts. Wait a few minutes, then ask for a new link.",
  oidc_denied: "The sign-in was cancelled at the identity provider.",
  oidc_state: "That sign-in has expired or was already used. Start again with the button below.",
  oidc_browser: "That sign-in was started in another browser. Start again in this one.",
  oidc_provider: "The identity provider did not answer as expected. Try again in a minute.",
  oidc_token: "The identity provider's answer could not be verified, so you were not signed in.",
  oidc_nonce: "The identity provider's answer was not for this sign-in. Start again.",
  oidc_email: "Your identity provider did not give a verified email address, which an account needs.",
  oidc_off: "This server has no identity provider set up.",
};

// `next` is where to go after signing in: only a path of this site, as the server checks it.
// One leading "/" ("//host" and "/\host" are other sites to a browser), nothing but visible
// ASCII (browsers drop tabs and newlines, so "/<tab>/evil.com" is "//evil.com"), and it must
// still resolve to this origin.
function nextPath() {
  const n = query("next");
  if (!n || n.length > 2048 || !/^\/[\x21-\x7e]*$/.test(n) || n.startsWith("//") || n.includes("\\")) return null;
  return new URL(n, location.origin).origin === location.origin ? n : null;
}

// The event a `next` link or `?event=ns/name` points at, for registration.
function eventFromLink() {
  const e = query("event");
  if (e && e.includes("/")) return e;
  const m = (nextPath() || "").match(/^\/e\/([^/]+)\/([^/?]+)/);
  return m ? `${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}` : null;
}

// Hosts sign up here: with the identity provider when the server has one, or by email; both
// lead to onboarding the first time.
function hostSignUp(who) {
  const next = nextPath() || "/welcome";
  const email = h("input", { type: "email", id: "signup-email-address", required: true, autocomplete: "email", placeholder: "you@example.com" });
  return h(
    "section",
    { class: "card", id: "host-signup" },
    h("h2", {}, "Host your own rooms"),
    h("p", { class: "muted" }, "An account gives you a dashboard and your own URL. Joining a room never needs one."),
    who.oidc
      ? h("a", { class: "button primary", id: "oidc-signin", href: `/signin/oidc?next=${encodeURIComponent(next)}` }, `Sign in with ${who.oidc}`)
      : null,
    h(
      "form",
      {
        id: "signup-email",
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            await post("/api/signin", { email: email.value.trim(), next });
            notice(`We sent a sign-up link to ${email.value.trim()}. Open it on this device to choose your URL.`, "ok");
          } catch (err) {
            refuse(err);
          }
        },
      },
      h("label", { for: "signup-email-address" }, who.oidc ? "Or with an emailed link" : "Email"),
      email,
      h("div", { class: "form-row" }, h("button", { type: "submit" }, "Email me a sign-up link")),
    ),
  );
}

function signInForm() {
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email", placeholder: "you@example.com" });
  return h(
    "form",
    {
      class: "card",
      id: "signin",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await post("/api/signin", { email: email.value.trim(), next: nextPath() || undefined });
          notice(`We sent a sign-in link to ${email.value.trim()}. Open it on this device to sign in.`, "ok");
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Sign in"),
    h("p", { class: "muted" }, "No password: we email you a link that signs you in."),
    h("label", { for: "signin-email" }, "Email"),
    Object.assign(email, { id: "signin-email" }),
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, "Email me a sign-in link")),
  );
}

// The ticket types of `ns/name` as a select, or a text box when they cannot be read.
async function ticketField(eventKey, current) {
  const [ns, name] = (eventKey || "").split("/");
  if (ns && name) {
    try {
      const t = await get(`/api/events/${enc(ns)}/${enc(name)}/tickets`);
      if ((t.ticketTypes || []).length) {
        return h(
          "select",
          { name: "ticketType", id: "reg-ticket", required: true },
          t.ticketTypes.map((x) => h("option", { value: x.name, selected: x.name === current }, x.title || x.name)),
        );
      }
    } catch {
      // Unknown event or no such endpoint: let the person type it.
    }
  }
  return h("input", { name: "ticketType", id: "reg-ticket", required: true, value: current || "general" });
}

function registerForm() {
  const event = h("input", { name: "event", required: true, placeholder: "namespace/event", value: eventFromLink() || "", id: "reg-event" });
  const name = h("input", { name: "name", required: true, autocomplete: "name", id: "reg-name" });
  const email = h("input", { type: "email", name: "email", required: true, autocomplete: "email", id: "reg-email" });
  let ticket = h("input", { name: "ticketType", required: true, value: query("ticket") || "general", id: "reg-ticket" });
  const refreshTickets = async () => {
    const next = await ticketField(event.value.trim(), ticket.value || query("ticket"));
    ticket.replaceWith(next);
    ticket = next;
  };
  event.addEventListener("change", refreshTickets);
  if (event.value) refreshTickets();
  return h(
    "form",
    {
      class: "card",
      id: "register",
      onsubmit: async (e) => {
        e.preventDefault();
        const [ns, ev] = event.value.trim().split("/");
        if (!ns || !ev) {
          notice("Give the event as namespace/name, as in its link /e/namespace/name.");
          return;
        }
        try {
          await post(`/api/events/${enc(ns)}/${enc(ev)}/register`, {
            email: email.value.trim(),
            name: name.value.trim(),
            ticketType: ticket.value.trim(),
          });
          notice(`Almost there: open the link we sent to ${email.value.trim()} to confirm your registration.`, "ok");
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Register for an event"),
    h("label", { for: "reg-event" }, "Event"),
    event,
    h("label", { for: "reg-name" }, "Your name"),
    name,
    h("label", { for: "reg-email" }, "Email"),
    email,
    h("label", { for: "reg-ticket" }, "Ticket"),
    ticket,
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, "Register")),
  );
}

function myEvents(who) {
  const events = [...new Set((who.tickets || []).map((t) => t.event))];
  return h(
    "section",
    { class: "card", id: "my-events" },
    h("h2", {}, `Signed in as ${who.name || who.email}`),
    events.length
      ? h(
          "ul",
          {},
          events.map((e) => {
            const [ns, name] = e.split("/");
            const types = who.tickets.filter((t) => t.event === e).map((t) => t.type).join(", ");
            return h("li", {}, h("a", { href: `/e/${enc(ns)}/${enc(name)}` }, name), ` (${types})`);
          }),
        )
      : h("p", { class: "muted" }, "You have no tickets yet. Organisers reach their events from the event link."),
  );
}

async function run() {
  setTitle("Welcome");
  const error = query("error");
  if (error) notice(linkErrors[error] || "Signing in did not work. Ask for a new link below.");
  if (query("deleted")) notice("Your account was deleted. A record that it was deleted is kept; nothing else.", "ok");
  const who = await whoami();
  const next = nextPath();
  if (who.signedIn && next) {
    location.replace(next);
    return;
  }
  const parts = [];
  if (who.signedIn) {
    parts.push(myEvents(who));
    if (who.slug) parts.push(h("p", { class: "card" }, h("a", { href: `/${enc(who.slug)}`, id: "my-dashboard" }, "Your dashboard"), " · ", h("a", { href: "/settings" }, "Profile settings")));
    else parts.push(h("p", { class: "card" }, h("a", { href: "/welcome" }, "Set up your host account")));
  } else {
    parts.push(signInForm());
    parts.push(hostSignUp(who));
  }
  parts.push(registerForm());
  clear(main(), h("div", { class: "narrow" }, parts));
}

run();
