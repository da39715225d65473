// The event page `/e/{ns}/{event}`: the sessions you may see with live watching / on-camera
// counts, the stages with their live indicator, "Create a session" when the event allows it,
// and the event-wide chat.

import { enc, get, pathParams, post } from "./api.js";
import { eventChat } from "./eventchat.js";
import { main, refuse, whoami, refusedPage } from "./page.js";
import { $, clear, h, notice, setTitle } from "./ui.js";

const REFRESH_MS = 3000;

const policyText = { Open: "Open", Moderated: "Moderated", InviteOnly: "Invite only" };

function when(start, end) {
  if (!start) return "";
  const s = new Date(start);
  const opts = { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" };
  const e = end ? new Date(end).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "";
  return `${s.toLocaleString([], opts)}${e ? ` – ${e}` : ""}`;
}

function sessionCard(ns, s) {
  return h(
    "a",
    { class: "card session-card", href: `/s/${enc(ns)}/${enc(s.name)}`, "data-session": s.name },
    h("h3", {}, s.title || s.name),
    s.description ? h("p", { class: "muted" }, s.description) : null,
    h(
      "div",
      { class: "meta" },
      h("span", { class: "badge", "data-count": "watching" }, `${s.watching ?? 0} watching`),
      h("span", { class: "badge", "data-count": "on-camera" }, `${s.onCamera ?? 0} on camera`),
      h("span", { class: "badge" }, policyText[s.sharePolicy] || s.sharePolicy || ""),
      s.phase ? h("span", { class: "badge" }, s.phase) : null,
      s.recording ? h("span", { class: "badge" }, "Recorded") : null,
    ),
    s.start ? h("span", { class: "muted" }, when(s.start, s.end)) : null,
  );
}

function stageCard(ns, st) {
  return h(
    "a",
    { class: "card session-card", href: `/stage/${enc(ns)}/${enc(st.name)}`, "data-stage": st.name },
    h("h3", {}, st.title || st.name),
    h(
      "div",
      { class: "meta" },
      h("span", { class: `live-badge ${st.live ? "on" : ""}` }, st.live ? "LIVE" : "Off air"),
      h("span", { class: "badge" }, `${st.watching ?? 0} watching`),
    ),
  );
}

function createForm(ns, event) {
  const title = h("input", { name: "title", required: true, maxLength: 200, placeholder: "What will you talk about?" });
  const description = h("textarea", { name: "description", rows: 2, maxLength: 2000 });
  const policy = h(
    "select",
    { name: "sharePolicy" },
    h("option", { value: "Open" }, "Open: anyone watching may share"),
    h("option", { value: "Moderated" }, "Moderated: people ask to share"),
  );
  const maxOnCamera = h("input", { type: "number", name: "maxParticipants", min: "1", max: "20", value: "10", required: true });
  const moderate = h("input", { type: "checkbox", name: "moderateMyself", checked: true, style: { width: "auto" } });
  const form = h(
    "form",
    {
      class: "card",
      id: "create-session",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const made = await post(`/api/events/${enc(ns)}/${enc(event)}/sessions`, {
            title: title.value.trim(),
            description: description.value.trim() || undefined,
            sharePolicy: policy.value,
            moderateMyself: moderate.checked,
            maxParticipants: Number(maxOnCamera.value),
          });
          location.href = `/s/${enc(ns)}/${enc(made.name)}`;
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Create a session"),
    h("label", {}, "Title"),
    title,
    h("label", {}, "Description"),
    description,
    h("label", {}, "Who may go on camera"),
    policy,
    h("label", {}, "People on camera at once (1–20; with more than 10, at most 150 may watch)"),
    maxOnCamera,
    h("label", { style: { display: "flex", gap: "8px", alignItems: "center" } }, moderate, "Make me moderator"),
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, "Create session")),
  );
  return form;
}

async function run() {
  const [ns, event] = pathParams("e");
  if (!ns || !event) {
    notice("This link is not an event link.");
    return;
  }
  await whoami();
  let ev;
  try {
    ev = await get(`/api/events/${enc(ns)}/${enc(event)}`);
  } catch (e) {
    refusedPage(e);
    return;
  }
  setTitle(ev.title || event);
  const sessions = h("div", { class: "sessions", id: "sessions" });
  const stages = h("div", { class: "sessions", id: "stages" });
  const left = h(
    "div",
    {},
    h(
      "div",
      { class: "event-hero" },
      ev.coverImage ? h("img", { src: ev.coverImage, alt: "", onerror: (e) => e.target.remove() }) : null,
      h(
        "div",
        {},
        ev.description ? h("p", {}, ev.description) : null,
        h("p", { class: "muted" }, when(ev.start, ev.end)),
        ev.isOrganizer ? h("a", { href: `/report/${enc(ns)}/${enc(event)}` }, "Event report") : null,
      ),
    ),
    h("h2", { class: "section-title" }, "Stage"),
    stages,
    h("h2", { class: "section-title" }, "Sessions"),
    sessions,
  );
  if (ev.attendeesMayCreateSessions || ev.isOrganizer) {
    left.append(h("h2", { class: "section-title" }, "Start your own"), createForm(ns, event));
  }
  const side = h("aside", { class: "side" });
  if (ev.chat) side.append(eventChat(ns, event).el);
  clear(main(), h("div", { class: "event-layout" }, left, side));

  const render = (data) => {
    clear(sessions, (data.sessions || []).map((s) => sessionCard(ns, s)));
    if (!(data.sessions || []).length) sessions.append(h("p", { class: "muted" }, "No sessions right now."));
    // Organisers get each stage's private backstage link next to it.
    clear(
      stages,
      (data.stages || []).flatMap((st) => [
        stageCard(ns, st),
        st.backstageLink
          ? h("a", { href: st.backstageLink, class: "backstage-link", "data-backstage": st.name }, `Backstage of ${st.title || st.name} (private: for speakers and organisers)`)
          : null,
      ]),
    );
    $("#stages").previousElementSibling.hidden = !(data.stages || []).length;
  };
  render(ev);
  // Counts change all the time; the list follows every few seconds.
  setInterval(async () => {
    try {
      render(await get(`/api/events/${enc(ns)}/${enc(event)}`));
    } catch {
      // Keep the last list; the next refresh tries again.
    }
  }, REFRESH_MS);
}

run();
