// The session page `/s/{ns}/{session}`: you enter watching (a dark screen while nobody is on
// camera); "Share audio and video" or "Request to share audio and video" by the session's
// policy; moderators get the moderation panel; the session's chat sits beside the event's.

import { enc, pathParams, post } from "./api.js";
import { eventChat } from "./eventchat.js";
import { main, onLeave, refuse, whoami } from "./page.js";
import { RoomView, profileOf } from "./roomview.js";
import { button, clear, h, notice, setTitle } from "./ui.js";

const policyText = {
  Open: "Open: anyone watching may share",
  Moderated: "Moderated: ask to share",
  InviteOnly: "Invite only: speakers share",
};

async function joinSession(ns, name) {
  for (;;) {
    try {
      return await post(`/api/sessions/${enc(ns)}/${enc(name)}/join`);
    } catch (e) {
      if (e.code === "not_live" || e.status === 503) {
        await notLive(ns, name, e);
        continue;
      }
      refuse(e);
      return null;
    }
  }
}

// The session has not started: say so; an organiser gets "Start"; everyone else waits and
// the page retries on its own.
function notLive(ns, name, e) {
  notice(e.message, "info");
  const app = main();
  return new Promise((resolve) => {
    const start = button("Start the session", async () => {
      try {
        await post(`/api/sessions/${enc(ns)}/${enc(name)}/start`);
        notice("Starting…", "info");
        resolve(500);
      } catch (err) {
        refuse(err);
      }
    }, { class: "primary", "data-action": "start" });
    // The API says whether this person may start it (organisers); others just wait.
    clear(app, h("div", { class: "waiting-screen" }, h("p", {}, e.message), e.body?.canStart ? start : null));
    setTimeout(() => resolve(e.body?.retryAfterMs || 5000), e.body?.retryAfterMs || 5000);
  });
}

async function run() {
  const [ns, name] = pathParams("s");
  if (!ns || !name) {
    notice("This link is not a session link.");
    return;
  }
  const me = await whoami();
  const join = await joinSession(ns, name);
  if (!join) return;
  notice(null);
  const s = join.session || {};
  setTitle(s.title || name);
  const view = new RoomView(join, {
    kind: "session",
    policy: s.sharePolicy,
    maxOnCamera: s.maxParticipants || 10,
    chatTitle: "Session chat",
    emptyText: "Nobody is on camera yet. You are watching.",
    profile: profileOf(me),
  });
  onLeave(() => view.close());

  const event = s.event || join.event;
  const head = h(
    "div",
    { class: "room-head" },
    view.counts.el,
    s.sharePolicy ? h("span", { class: "badge" }, policyText[s.sharePolicy] || s.sharePolicy) : null,
    event ? h("a", { href: `/e/${enc(ns)}/${enc(event)}` }, "Back to the event") : null,
  );
  const side = h("aside", { class: "side" }, view.moderationEl(), view.chat.el);
  if (event && s.eventChat !== false) side.append(eventChat(ns, event).el);
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
