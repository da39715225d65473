// The session page `/s/{ns}/{session}`: you enter watching (a dark screen while nobody is on
// camera); "Share audio and video" or "Request to share audio and video" by the session's
// policy; moderators get the moderation panel; the session's chat sits beside the event's.

import { enc, get, pathParams, post } from "./api.js";
import { eventChat } from "./eventchat.js";
import { main, onLeave, refuse, whoami, refusedPage } from "./page.js";
import { RoomView, profileOf } from "./roomview.js";
import { button, clear, h, notice, setTitle } from "./ui.js";

const policyText = {
  Open: "Open: anyone watching may share",
  Moderated: "Moderated: ask to share",
  InviteOnly: "Invite only: speakers share",
};

// Joins, or says the session has not started yet: an organiser gets "Start"; everyone else
// waits and the page joins by itself when it goes live.
async function joinSession(ns, name, info) {
  for (;;) {
    try {
      return await post(`/api/sessions/${enc(ns)}/${enc(name)}/join`);
    } catch (e) {
      if (e.code !== "not_live") {
        refuse(e);
        return null;
      }
      await notLive(ns, name, info, e);
    }
  }
}

const RETRY_MS = 1500;

function notLive(ns, name, info, e) {
  notice(e.message, "info");
  return new Promise((resolve) => {
    const start = button("Start the session", async () => {
      try {
        await post(`/api/sessions/${enc(ns)}/${enc(name)}/start`);
        notice("Starting…", "info");
        setTimeout(resolve, 500);
      } catch (err) {
        refuse(err);
      }
    }, { class: "primary", "data-action": "start" });
    clear(
      main(),
      h(
        "div",
        { class: "waiting-screen", id: "not-live" },
        h("p", {}, info.start ? `Scheduled for ${new Date(info.start).toLocaleString()}.` : "This session has not started."),
        info.isOrganizer ? start : h("div", { class: "spinner" }),
      ),
    );
    setTimeout(resolve, RETRY_MS);
  });
}

async function run() {
  const [ns, name] = pathParams("s");
  if (!ns || !name) {
    notice("This link is not a session link.");
    return;
  }
  const me = await whoami();
  let s;
  try {
    s = await get(`/api/sessions/${enc(ns)}/${enc(name)}`);
  } catch (e) {
    refusedPage(e);
    return;
  }
  setTitle(s.title || name);
  const join = await joinSession(ns, name, s);
  if (!join) return;
  notice(null);
  const view = new RoomView(join, {
    kind: "session",
    policy: s.sharePolicy,
    maxOnCamera: s.maxParticipants || 10,
    chatTitle: "Session chat",
    emptyText: "Nobody is on camera yet. You are watching.",
    profile: profileOf(me),
    rejoin: () => post(`/api/sessions/${enc(ns)}/${enc(name)}/join`),
  });
  onLeave(() => view.close());

  const event = s.event;
  const head = h(
    "div",
    { class: "room-head" },
    view.counts.el,
    s.sharePolicy ? h("span", { class: "badge" }, policyText[s.sharePolicy] || s.sharePolicy) : null,
    s.recording
      ? h("span", { class: "badge recording", id: "recording-indicator", title: "Whoever is on camera is recorded" }, "● Recorded while people are on camera")
      : null,
    event ? h("a", { href: `/e/${enc(ns)}/${enc(event)}` }, "Back to the event") : null,
  );
  const side = h("aside", { class: "side" }, view.moderationEl(), view.chat.el);
  if (event) side.append(eventChat(ns, event).el);
  clear(
    main(),
    h("div", { class: "room-layout" }, h("section", { class: "stage-area" }, head, view.tiles.el, view.controls), side),
  );
  try {
    await view.start();
  } catch (e) {
    refuse(e);
  }
}

run();
