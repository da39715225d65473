// What a session, a backstage, a stage and a meeting room have in common once joined: the
// video wall, live counts, the share / request-to-share button, the moderation panel, the
// room's chat, and every refusal shown in words. Pages add their own parts around it.

import { sleep } from "./api.js";
import { LiveRoom } from "./live.js";
import { notifyIfHidden } from "./notify.js";
import { GIVE_UP_MS, backoffDelay, worthRetrying } from "./reconnect.js";
import { Tiles, diagnostics } from "./tiles.js";
import { h, button, chatPanel, countsView, moderationPanel, notice } from "./ui.js";

// How the share button behaves for this person in this room.
//   "share"   — "Share audio and video" goes straight on camera;
//   "request" — "Request to share audio and video" (a moderator lets them on camera);
//   "none"    — watch only (webinar attendees, stage audience, non-invitees).
export function shareMode({ policy, role, kind, theme }) {
  if (kind === "stage") return "none";
  if (theme === "Webinar" && !(role.host || role.share)) return "none";
  if (kind === "backstage") return role.moderate || role.host ? "share" : "request";
  if (role.share || role.moderate || role.host) return "share";
  if (policy === "Moderated") return "request";
  if (policy === "InviteOnly") return "none";
  return "share";
}

export function labels(kind) {
  const ask = kind === "backstage" ? "Ask to share audio and video" : "Request to share audio and video";
  return { share: "Share audio and video", ask, stop: "Stop sharing", withdraw: "Withdraw request" };
}

export class RoomView {
  // join: the control plane's join answer; opts: {kind, policy, theme, maxOnCamera,
  // chatTitle, emptyText, profile, stream (already-checked camera), share, rejoin (asks the
  // control plane for a new join answer, as the page did at first: when a relay sends
  // `reconnect`, or the connection to the room is lost)}
  constructor(join, opts) {
    this.join = join;
    this.opts = opts;
    this.role = join.role || {};
    this.live = new LiveRoom(join, { slots: opts.slots || Math.max(opts.maxOnCamera || 10, 1) });
    diagnostics.live = this.live;
    this.tiles = new Tiles(this.live, { emptyText: opts.emptyText });
    this.counts = countsView();
    // Which way the media goes (direct UDP, or TURN where the network blocks UDP), so a person
    // on a locked-down network sees why video may lag and support can tell what happened.
    this.pathEl = h("span", { class: "media-path", "data-media-path": "", title: "How your video connects" });
    this.counts.el.append(this.pathEl);
    // "connecting" until the room's welcome: the room does not know this page yet, so going
    // on camera (which names this page's participant) waits for it.
    this.state = "connecting";
    this.onCamera = new Map(); // id -> profile
    this.mode = opts.share || shareMode({ policy: opts.policy, role: this.role, kind: opts.kind, theme: opts.theme });
    this.words = labels(opts.kind);
    this.lastCounts = { watching: 0, on_camera: 0, screen_share_available: true };

    this.shareBtn = button(this.words.share, () => this.onShareClick(), { class: "primary", "data-action": "share" });
    this.screenBtn = button("Share screen", () => this.onScreenClick(), { "data-action": "screen", hidden: true });
    this.micBtn = button("Mute", () => this.toggle("audio"), { hidden: true, "data-action": "mic" });
    this.camBtn = button("Camera off", () => this.toggle("video"), { hidden: true, "data-action": "cam" });
    this.statusEl = h("span", { class: "share-status", role: "status" });
    // Shown once the page has given up re-joining by itself.
    this.rejoinBtn = button("Rejoin", () => this.recover(), { class: "primary", "data-action": "rejoin", hidden: true });
    this.recovering = false;
    this.controls = h("div", { class: "controls" }, this.rejoinBtn, this.shareBtn, this.screenBtn, this.micBtn, this.camBtn, this.statusEl);

    this.chat = chatPanel(opts.chatTitle || "Chat", (text) => this.live.send({ type: "chat", text }), { id: "room-chat" });
    this.moderation = null;
    this.speakers = null;
    if (this.role.moderate || this.role.host) {
      this.moderation = moderationPanel({
        title: "Requests to share",
        empty: "No one is asking to share right now.",
        actions: [
          ["Approve", (id) => this.live.send({ type: "approve_share", participant: id }), "primary"],
          ["Decline", (id) => this.live.send({ type: "deny_share", participant: id })],
        ],
      });
      this.speakers = moderationPanel({
        title: "On camera",
        empty: "Nobody is on camera.",
        actions: [["Remove", (id) => this.live.send({ type: "remove_from_camera", participant: id }), "danger"]],
      });
    }
    this.renderShare();
    this.wire();
  }

  // The side panel of moderators: requests (with profiles) and who is on camera.
  moderationEl() {
    if (!this.moderation) return null;
    return h("div", { class: "panel", id: "moderation" }, this.moderation.el, this.speakers.el);
  }

  wire() {
    const live = this.live;
    live.on("welcome", (e) => {
      this.setCounts(e.counts);
      this.chat.reset(e.chat);
      this.onCamera.clear();
      for (const p of e.on_camera) this.onCamera.set(p.id, p.profile);
      this.speakers?.reset(e.on_camera.map((p) => (p.id === e.you ? { ...p, you: true } : p)));
      this.moderation?.reset(e.share_requests);
      if (this.state === "connecting") this.setState("watching");
      if (e.state === "requested") this.setState("requested");
      if (e.state === "approved") this.setState("approved");
    });
    live.on("counts", (e) => this.setCounts(e));
    live.on("chat", (m) => this.chat.add(m.name, m.text, m.at_ms));
    live.on("share_requested", (e) => {
      this.moderation?.add(e.participant);
      if (this.moderation) notifyIfHidden("A request to share", `${e.participant.profile?.name || "Someone"} asks to share audio and video.`);
    });
    live.on("share_request_resolved", (e) => this.moderation?.remove(e.participant));
    live.on("on_camera", (e) => {
      this.onCamera.set(e.participant.id, e.participant.profile);
      this.speakers?.add(e.participant.id === live.you ? { ...e.participant, you: true } : e.participant);
    });
    live.on("off_camera", (e) => {
      this.onCamera.delete(e.participant);
      this.speakers?.remove(e.participant);
    });
    live.on("share_approved", () => {
      // A moderator's one click puts the requester on camera.
      if (this.state !== "on_camera") this.goOnCamera();
    });
    live.on("share_denied", () => {
      this.setState("watching");
      notice("A moderator declined your request to share audio and video.", "info");
    });
    live.on("removed_from_camera", () => {
      this.tiles.hideLocal();
      this.setState("watching");
      notice("A moderator took you off camera. You are still watching.", "info");
    });
    live.on("refused", (e) => {
      if (this.state === "requested" && e.code !== "chat_length") this.setState("watching");
      notice(e.message);
    });
    live.on("draining", () => notice("This room is closing. You can stay until it ends.", "info"));
    live.on("disconnected", () => this.recover());
    live.on("media_failed", () => notice("Media could not connect (network or firewall). Reload the page to try again."));
    live.on("media_path", (e) => {
      this.pathEl.textContent = e.path ? `media: ${e.path}` : "";
      this.pathEl.dataset.mediaPath = e.path || "";
    });
    live.on("screen_stopped", () => this.renderShare());
    live.on("reconnect", () => this.recover());
  }

  // The connection to the room is gone (its SFU pod died, the control plane restarted) or the
  // relay serving this page is leaving: ask the control plane for a new join answer as at
  // first, move there, and go back on camera with the same camera and microphone if this
  // person was on camera. Retries with a bounded, jittered back-off; after GIVE_UP_MS, or on a
  // refusal in words (the room ended, no longer allowed), it stops and says so, with a
  // "Rejoin" button.
  async recover() {
    if (this.recovering || this.live.closed) return;
    if (!this.opts.rejoin) {
      notice("The connection to the live room was lost. Reload the page to rejoin.");
      return;
    }
    this.recovering = true;
    this.rejoinBtn.hidden = true;
    const wasOnCamera = this.state === "on_camera" || this.live.publishPc !== null;
    if (this.state === "requested") this.setState("watching");
    notice("Reconnecting…", "info");
    this.tiles.el.dataset.reconnecting = "";
    // `giveUpMs` on the page's diagnostics lets a test see the give-up without waiting 90 s.
    const deadline = Date.now() + (diagnostics.giveUpMs || GIVE_UP_MS);
    let failure = null;
    let resumed = false;
    for (let attempt = 0; ; attempt++) {
      try {
        const join = await this.opts.rejoin();
        resumed = (await this.live.move(join, { keepCamera: wasOnCamera })).resumed === true;
        failure = null;
        break;
      } catch (e) {
        failure = e;
        const wait = backoffDelay(attempt);
        if (this.live.closed || !worthRetrying(e) || Date.now() + wait > deadline) break;
        await sleep(wait);
      }
    }
    this.recovering = false;
    delete this.tiles.el.dataset.reconnecting;
    if (failure) {
      this.dropCamera();
      this.setState("disconnected");
      this.counts.el.style.display = "none"; // the last counts are no longer known
      this.rejoinBtn.hidden = false;
      notice(
        worthRetrying(failure)
          ? "Could not reconnect to the live room. Check your connection, then press Rejoin."
          : failure.message || "The live room did not let this page back in.",
      );
      return;
    }
    notice(null);
    this.counts.el.style.display = "";
    if (this.state === "disconnected") this.setState("watching");
    // A resumed page never left: its camera is still on its own connection.
    if (wasOnCamera && !resumed && this.live.localStream) await this.republish();
  }

  // Back on camera after a re-join, with the stream that was already open.
  async republish() {
    const stream = this.live.localStream;
    this.setState("joining");
    try {
      await this.live.publish(stream);
      this.tiles.showLocal(stream, this.opts.profile || {});
      this.setState("on_camera");
    } catch (e) {
      this.dropCamera();
      notice(`You are back in the room, watching: ${e.message || "going back on camera failed"}`, "info");
    }
  }

  dropCamera() {
    this.tiles.hideLocal();
    this.live.localStream?.getTracks().forEach((t) => t.stop());
    this.live.localStream = null;
    this.opts.stream = null;
    this.setState("watching");
  }

  async start() {
    const first = await this.live.connect();
    if (first.type === "welcome") await this.live.watch();
    return first;
  }

  setCounts(c) {
    this.lastCounts = c;
    this.counts.set(c);
    this.renderShare();
  }

  setState(s) {
    this.state = s;
    this.renderShare();
  }

  renderShare() {
    const b = this.shareBtn;
    if (this.state === "disconnected") {
      // Given up re-joining: only "Rejoin" means anything until it works.
      b.hidden = this.micBtn.hidden = this.camBtn.hidden = this.screenBtn.hidden = true;
      this.statusEl.textContent = "";
      return;
    }
    if (this.state === "connecting") {
      b.hidden = this.mode === "none";
      b.disabled = true;
      this.micBtn.hidden = this.camBtn.hidden = this.screenBtn.hidden = true;
      this.statusEl.textContent = "Connecting to the room…";
      return;
    }
    const onCam = this.state === "on_camera";
    const max = this.opts.maxOnCamera || 10;
    const full = !onCam && (this.lastCounts.on_camera ?? 0) >= max;
    b.hidden = this.mode === "none";
    b.disabled = false;
    b.title = "";
    this.micBtn.hidden = this.camBtn.hidden = !onCam;
    if (onCam) {
      b.textContent = this.words.stop;
      b.className = "danger";
      this.statusEl.textContent = "You are on camera.";
    } else if (this.state === "requested") {
      b.textContent = this.words.withdraw;
      b.className = "";
      this.statusEl.textContent = "Waiting for a moderator…";
    } else if (this.state === "joining") {
      b.disabled = true;
      this.statusEl.textContent = "Starting your camera…";
    } else {
      b.textContent = this.mode === "request" ? this.words.ask : this.words.share;
      b.className = "primary";
      this.statusEl.textContent = this.mode === "none" ? this.noneText() : "";
      if (full) {
        b.disabled = true;
        b.title = `${max} of ${max} are on camera; try again when someone leaves.`;
        this.statusEl.textContent = `${max} of ${max} on camera.`;
      }
    }
    // Screen sharing: a backstage allows it while at most 4 speakers are on screen.
    const screenOk = this.lastCounts.screen_share_available !== false;
    this.screenBtn.hidden = !(onCam && this.opts.screenShare);
    this.screenBtn.disabled = !this.live.screenPc && !screenOk;
    this.screenBtn.title = screenOk ? "" : "Screen sharing is available while at most 4 speakers are on screen.";
    this.screenBtn.textContent = this.live.screenPc ? "Stop sharing screen" : "Share screen";
  }

  noneText() {
    if (this.opts.kind === "stage") return "";
    if (this.opts.theme === "Webinar") return "In a webinar the hosts present; you watch and chat.";
    return "Only invited speakers share audio and video in this session.";
  }

  async onShareClick() {
    notice(null);
    if (this.state === "on_camera") {
      this.live.stopPublishing();
      this.tiles.hideLocal();
      this.setState("watching");
      return;
    }
    if (this.state === "requested") {
      this.live.send({ type: "withdraw_request" });
      this.setState("watching");
      return;
    }
    if (this.mode === "request") {
      this.live.send({ type: "request_share" });
      this.setState("requested");
      return;
    }
    await this.goOnCamera();
  }

  async goOnCamera() {
    this.setState("joining");
    try {
      const stream = this.opts.stream || (await this.live.camera());
      this.live.localStream = stream;
      await this.live.publish(stream);
      this.tiles.showLocal(stream, this.opts.profile || {});
      this.setState("on_camera");
    } catch (e) {
      this.live.localStream?.getTracks().forEach((t) => t.stop());
      this.live.localStream = null;
      this.opts.stream = null;
      this.setState("watching");
      notice(cameraError(e));
    }
  }

  async onScreenClick() {
    notice(null);
    if (this.live.screenPc) {
      this.live.stopScreen();
      return;
    }
    try {
      await this.live.shareScreen();
    } catch (e) {
      notice(e.message);
    }
    this.renderShare();
  }

  toggle(kind) {
    const track = this.live.localStream?.getTracks().find((t) => t.kind === kind);
    if (!track) return;
    track.enabled = !track.enabled;
    if (kind === "audio") this.micBtn.textContent = track.enabled ? "Mute" : "Unmute";
    else this.camBtn.textContent = track.enabled ? "Camera off" : "Camera on";
  }

  close() {
    this.live.close();
  }
}

export function cameraError(e) {
  if (e?.name === "NotAllowedError") return "Camera and microphone are blocked. Allow them in the browser's address bar, then try again.";
  if (e?.name === "NotFoundError") return "No camera or microphone was found on this device.";
  if (e?.name === "NotReadableError") return "The camera is in use by another application.";
  return e?.message || String(e);
}

export function profileOf(me) {
  const l = me?.label || {};
  return { name: l.name || me?.name || "", headline: l.headline || "", image: l.image || "", color: l.color || "" };
}

