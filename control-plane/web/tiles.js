// The video wall: one tile per person (and per shared screen) on camera, each with its name
// label; a dark screen with a sentence when nobody is on camera. Tiles follow the room's
// `track` / `track_ended` events; each tile's size is reported with `view` so the room sends
// a layer that fits.

import { h, nameLabel } from "./ui.js";

export const diagnostics = (window.roundtable = window.roundtable || {
  firstFrameMs: null, // performance.now() of the first remote video frame shown
  live: null,
});

export class Tiles {
  constructor(live, { emptyText = "Nobody is on camera yet." } = {}) {
    this.live = live;
    this.profiles = new Map(); // participant id -> profile
    this.tiles = new Map(); // "participant:source" -> {el, video, mid}
    this.audio = new Map(); // mid -> <audio>
    this.local = null;
    this.grid = h("div", { class: "grid" });
    this.emptyEl = h("p", { class: "empty-text" }, emptyText);
    this.el = h("div", { class: "wall empty", "data-testid": "wall" }, this.grid, this.emptyEl);
    this.resize = new ResizeObserver((entries) => {
      for (const entry of entries) {
        const mid = entry.target.dataset.mid;
        if (!mid) continue;
        const r = entry.contentRect;
        const dpr = window.devicePixelRatio || 1;
        live.view(mid, r.width * dpr, r.height * dpr);
      }
    });
    live.on("slot", (e) => this.place(e));
    live.on("slot_ended", (e) => this.unplace(e));
    live.on("welcome", (e) => {
      for (const p of e.on_camera) this.profiles.set(p.id, p.profile);
      this.relabel();
    });
    live.on("on_camera", (e) => {
      this.profiles.set(e.participant.id, e.participant.profile);
      this.relabel();
    });
  }

  setEmptyText(text) {
    this.emptyEl.textContent = text;
  }

  update() {
    const n = this.tiles.size + (this.local ? 1 : 0);
    this.el.classList.toggle("empty", n === 0);
    this.grid.dataset.count = String(n);
  }

  relabel() {
    for (const [key, t] of this.tiles) {
      const [id, source] = key.split(":");
      t.label.replaceWith((t.label = this.label(Number(id), source)));
    }
  }

  label(id, source) {
    const profile = this.profiles.get(id) || { name: "Guest" };
    if (source === "screen") return nameLabel({ ...profile, name: `${profile.name}'s screen`, headline: "" }, { small: true });
    return nameLabel(profile, { small: true });
  }

  place({ mid, info, track }) {
    if (!track) return;
    if (info.kind === "audio") {
      let a = this.audio.get(mid);
      if (!a) {
        a = h("audio", { autoplay: true });
        this.audio.set(mid, a);
        this.el.append(a);
      }
      a.srcObject = new MediaStream([track]);
      return;
    }
    const key = `${info.participant}:${info.source}`;
    let t = this.tiles.get(key);
    if (!t) {
      const video = h("video", { autoplay: true, muted: true, playsInline: true });
      const label = this.label(info.participant, info.source);
      const el = h("figure", { class: `tile ${info.source}`, "data-participant": String(info.participant) }, video, label);
      t = { el, video, label, mid };
      this.tiles.set(key, t);
      this.grid.append(el);
    }
    t.mid = mid;
    t.el.dataset.mid = mid;
    t.video.muted = true;
    t.video.srcObject = new MediaStream([track]);
    this.resize.observe(t.el);
    this.watchFirstFrame(t.video);
    this.update();
  }

  unplace({ mid }) {
    const a = this.audio.get(mid);
    if (a) {
      a.srcObject = null;
      a.remove();
      this.audio.delete(mid);
    }
    for (const [key, t] of this.tiles) {
      if (t.mid !== mid) continue;
      this.resize.unobserve(t.el);
      t.video.srcObject = null;
      t.el.remove();
      this.tiles.delete(key);
    }
    this.update();
  }

  watchFirstFrame(video) {
    if (diagnostics.firstFrameMs !== null) return;
    const mark = () => {
      if (diagnostics.firstFrameMs === null) diagnostics.firstFrameMs = performance.now();
    };
    if (video.requestVideoFrameCallback) video.requestVideoFrameCallback(mark);
    else video.addEventListener("loadeddata", mark, { once: true });
  }

  // Your own camera, shown mirrored and muted.
  showLocal(stream, profile) {
    this.hideLocal();
    const video = h("video", { autoplay: true, muted: true, playsInline: true, class: "mirror" });
    video.srcObject = stream;
    this.local = h("figure", { class: "tile local" }, video, nameLabel({ ...profile, headline: "You" }, { small: true }));
    this.grid.prepend(this.local);
    this.update();
  }

  hideLocal() {
    this.local?.remove();
    this.local = null;
    this.update();
  }
}
