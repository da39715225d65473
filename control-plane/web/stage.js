// The stage page `/stage/{ns}/{name}`: the audience's view. Dark and "off air" until an
// organiser presses Broadcast in the backstage; then the backstage is shown live, with the
// live indicator, until "Stop broadcasting".

import { enc, get, pathParams, post } from "./api.js";
import { main, onLeave, refuse, whoami, refusedPage } from "./page.js";
import { RoomView, profileOf } from "./roomview.js";
import { clear, h, notice, setTitle } from "./ui.js";
import { joinStageWhenLive } from "./waiting.js";

async function run() {
  const [ns, name] = pathParams("stage");
  if (!ns || !name) {
    notice("This link is not a stage link.");
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
  setTitle(stage.title || name);
  const join = await joinStageWhenLive(ns, name, stage, { backstage: false });
  if (!join) return;
  notice(null);
  const view = new RoomView(join, {
    kind: "stage",
    share: "none",
    maxOnCamera: 5,
    slots: 9, // 5 speakers and up to 4 shared screens
    chatTitle: "Stage chat",
    emptyText: "Nobody is on the stage yet.",
    profile: profileOf(me),
    rejoin: () => post(`/api/stages/${enc(ns)}/${enc(name)}/join`, { backstage: false }),
  });
  onLeave(() => view.close());
  const badge = h("span", { class: "live-badge", id: "live-indicator", role: "status" }, "Off air");
  // Off air the SFU tells the audience of nobody on camera (the backstage rehearses in private).
  const setLive = (live) => {
    badge.classList.toggle("on", live);
    badge.textContent = live ? "LIVE" : "Off air";
    view.tiles.el.classList.toggle("off-air", !live);
    view.tiles.setEmptyText(live ? "Nobody is on the stage yet." : "The stage is off air. It starts here when the organisers go live.");
  };
  setLive(Boolean(stage.live));
  view.live.on("welcome", (e) => setLive(e.broadcasting));
  view.live.on("broadcast", (e) => setLive(e.live));
  const head = h(
    "div",
    { class: "room-head" },
    badge,
    view.counts.el,
    stage.backstageLink ? h("a", { href: stage.backstageLink, id: "backstage-link" }, "Go to the backstage") : null,
  );
  clear(
    main(),
    h("div", { class: "room-layout" }, h("section", { class: "stage-area" }, head, view.tiles.el), h("aside", { class: "side" }, view.chat.el)),
  );
  try {
    await view.start();
  } catch (e) {
    refuse(e);
  }
}

run();
