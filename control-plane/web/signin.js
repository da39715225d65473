// The start page `/`: sign in with an emailed link (no password), or register for an event
// (built-in registration); once signed in, your events.

import { enc, get, post, query } from "./api.js";
import { main, refuse, whoami } from "./page.js";
import { clear, h, notice, setTitle } from "./ui.js";

// Why an emailed sign-in link did not sign you in (`/?error=<code>` from the server).
const linkErrors = {
  link_invalid: "That sign-in link has expired or was already used. Ask for a new one below.",
  too_many_attempts: "Too many attempts. Wait a few minutes, then ask for a new link.",
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
  const who = await whoami();
  const next = nextPath();
  if (who.signedIn && next) {
    location.replace(next);
    return;
  }
  const parts = [];
  if (who.signedIn) parts.push(myEvents(who));
  else parts.push(signInForm());
  parts.push(registerForm());
  clear(main(), h("div", { class: "narrow" }, parts));
}

run();
