// The backstage `/backstage/{ns}/{name}?key=…`: the private room where speakers rehearse.
// Anyone registered with the link may enter and "Ask to share audio and video"; organisers
// accept from the moderation panel and press Broadcast / Stop broadcasting. At most 5
// speakers on screen; screen sharing while at most 4 are (greyed out at 5). Its chat is
// only for those in the backstage.

import { enc, get, pathParams, post, query } from "./api.js";
import { main, onLeave, refuse, whoami, refusedPage } from "./page.js";
import { RoomView, profileOf } from "./roomview.js";
import { button, clear, h, notice, setTitle } from "./ui.js";
import { joinStageWhenLive } from "./waiting.js";

const MAX_SPEAKERS = 5; // PRODUCT.md §4; a Stage may set fewer

async function run() {
  const [ns, name] = pathParams("backstage");
  if (!ns || !name) {
    notice("This link is not a backstage link.");
    return;
  }
  const me = await whoami();
  let stage;
  try {
    stage = await get(`/api/stages/${enc(ns)}/${enc(name)}`);
  } catch (e) {
    refusedPage(e);
    return;
  }
  const title = stage.title || name;
  setTitle(`Backstage · ${title}`);
  const join = await joinStageWhenLive(ns, name, stage, { backstage: true, key: query("key") || undefined });
  if (!join) return;
  notice(null);
  const view = new RoomView(join, {
    kind: "backstage",
    maxOnCamera: stage.maxSpeakers || MAX_SPEAKERS,
    slots: 9,
    screenShare: true,
    chatTitle: "Backstage chat",
    emptyText: "Nobody is on camera in the backstage yet.",
    profile: profileOf(me),
    rejoin: () => post(`/api/stages/${enc(ns)}/${enc(name)}/join`, { backstage: true, key: query("key") || undefined }),
  });
  onLeave(() => view.close());

  const organiser = Boolean(join.role?.host || join.role?.moderate);
  const badge = h("span", { class: "live-badge", id: "live-indicator", role: "status" }, "Not broadcasting");
  let live = false;
  const broadcastBtn = button("Broadcast", async () => {
    const on = !live;
    notice(null);
    // The room's gate is instant; the API remembers it on the Stage.
    view.live.send({ type: "broadcast", live: on });
    try {
      await post(`/api/stages/${enc(ns)}/${enc(name)}/broadcast`, { on });
    } catch (e) {
      refuse(e);
    }
  }, { class: "primary", "data-action": "broadcast", hidden: !organiser });
  // Ends the stage for good: everyone in the backstage and on the stage leaves.
  const endBtn = button("End the stage", async () => {
    if (!confirm("End the stage for everyone? It cannot be started again.")) return;
    try {
      await post(`/api/stages/${enc(ns)}/${enc(name)}/end`);
      notice("The stage is ending.", "info");
    } catch (e) {
      refuse(e);
    }
  }, { class: "danger", "data-action": "end", hidden: !organiser });
  const setLive = (on) => {
    live = on;
    badge.classList.toggle("on", on);
    badge.textContent = on ? "LIVE on stage" : "Not broadcasting";
    broadcastBtn.textContent = on ? "Stop broadcasting" : "Broadcast";
    broadcastBtn.className = on ? "danger" : "primary";
  };
  view.live.on("welcome", (e) => setLive(e.broadcasting));
  view.live.on("broadcast", (e) => setLive(e.live));

  const max = stage.maxSpeakers || MAX_SPEAKERS;
  const speakers = h("span", { class: "badge", id: "speakers" });
  view.live.on("counts", (c) => (speakers.textContent = `${c.on_camera} of ${max} speakers on screen`));
  view.live.on("welcome", (e) => (speakers.textContent = `${e.counts.on_camera} of ${max} speakers on screen`));

  const head = h(
    "div",
    { class: "room-head" },
    badge,
    broadcastBtn,
    endBtn,
    view.counts.el,
    speakers,
    h("a", { href: `/stage/${enc(ns)}/${enc(name)}`, target: "_blank" }, "Open the stage"),
  );
  clear(
    main(),
    h(
      "div",
      { class: "room-layout" },
      h("section", { class: "stage-area" }, head, view.tiles.el, view.controls),
      h("aside", { class: "side" }, view.moderationEl(), view.chat.el),
    ),
  );
  try {
    await view.start();
  } catch (e) {
    refuse(e);
  }
}

run();
