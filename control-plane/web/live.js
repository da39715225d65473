// A live room on an sfu-node: the room-events WebSocket (counts, chat, moderation, lobby,
// broadcast, which participant's track is in which slot), WHEP to watch through a fixed set
// of receive-only slots, and WHIP to go on camera or share a screen.
//
// The join answer from the control plane gives `{signalling: {sfu, origin}, room, token,
// iceServers}`: the page watches and opens its events at `sfu` (a relay of a big session, or
// the origin) and publishes at `origin`, both paths of the control plane's signalling proxy on
// this page's own origin (a page on https may not call an SFU pod's http address). Media goes
// to the SFU directly, or through the TURN servers in `iceServers` where UDP is blocked. A
// relay that is leaving sends `reconnect`; a socket that closes by itself (the SFU pod died,
// the control plane restarted) emits `disconnected`. Either way the page joins again through
// the control plane and `move`s to where the new answer says (see RoomView.recover). When only
// the events socket dropped (the control plane that proxied it restarted) and the room is the
// same run (the welcome's `instance`), `move` resumes the same participant with the media
// connections untouched: nobody's video pauses.

import { errorFrom } from "./api.js";

// The sfu-node forwards one layer per slot, chosen from the tile size we report.
const SIMULCAST = [
  { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
  { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
  { rid: "f", maxBitrate: 1_500_000 },
];

export class LiveRoom {
  constructor(join, { slots = 10 } = {}) {
    this.setJoin(join);
    this.slots = slots;
    this.you = null;
    this.handlers = new Map();
    this.slotInfo = new Map(); // mid -> {participant, kind, source}
    this.viewPc = null;
    this.publishPc = null;
    this.screenPc = null;
    this.peers = []; // Location URLs of our connections, deleted on leave
    this.localStream = null;
    this.screenStream = null;
    this.closed = false;
  }

  // Where a join answer sends the page: its events and watching base, and its origin's.
  static bases({ sfu, origin, room, signalling }) {
    const via = signalling || { sfu, origin };
    const base = (url) =>
      `${new URL(url, location.href).href.replace(/\/$/, "")}/rooms/${encodeURIComponent(room)}`;
    return { base: base(via.sfu), originBase: base(via.origin || via.sfu) };
  }

  setJoin(join) {
    const { token, iceServers } = join;
    Object.assign(this, LiveRoom.bases(join));
    this.token = token;
    this.iceServers = iceServers || [];
  }

  peerConnection() {
    return new RTCPeerConnection({ bundlePolicy: "max-bundle", iceServers: this.iceServers });
  }

  // Which way media flows on our connections: "direct UDP", "direct TCP", "TURN/UDP",
  // "TURN/TCP", "TURN/TLS", or null before ICE has picked a pair.
  async mediaPath() {
    for (const pc of [this.viewPc, this.publishPc]) {
      if (!pc) continue;
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) {
        stats.forEach((s) => {
          if (s.type === "candidate-pair" && s.state === "succeeded" && s.nominated) pair = s;
        });
      }
      const local = pair && stats.get(pair.localCandidateId);
      if (!local) continue;
      if (local.candidateType === "relay") return `TURN/${(local.relayProtocol || "udp").toUpperCase()}`;
      return `direct ${(local.protocol || "udp").toUpperCase()}`;
    }
    return null;
  }

  on(type, fn) {
    if (!this.handlers.has(type)) this.handlers.set(type, []);
    this.handlers.get(type).push(fn);
    return this;
  }

  emit(type, event) {
    for (const fn of this.handlers.get(type) || []) fn(event);
    for (const fn of this.handlers.get("*") || []) fn(event);
  }

  // Opens the events channel. Resolves with the first of `welcome` (in) or `waiting` (a
  // locked room's lobby); rejects with the room's refusal.
  // With `resume`, the socket asks to carry on as this page's participant (see `move`).
  connect({ resume = false } = {}) {
    let url = `${this.base.replace(/^http/, "ws")}/events?token=${encodeURIComponent(this.token)}`;
    if (resume) url += `&participant=${this.you}&instance=${this.instance}`;
    return new Promise((resolve, reject) => {
      let settled = false;
      const ws = new WebSocket(url);
      this.ws = ws;
      ws.onmessage = (m) => {
        let e;
        try {
          e = JSON.parse(m.data);
        } catch {
          return;
        }
        if (e.type === "welcome") {
          // A resumed socket's welcome refreshes the page's view of the room; listeners that
          // act once on being let in skip it (`resumed`).
          if (resume && !settled) e.resumed = true;
          this.you = e.you;
          this.instance = e.instance;
        }
        if (e.type === "track") this.placeTrack(e);
        if (e.type === "track_ended") this.endTrack(e);
        if (e.type === "removed_from_camera") this.stopPublishing({ tell: false });
        this.emit(e.type, e);
        if (!settled && (e.type === "welcome" || e.type === "waiting")) {
          settled = true;
          resolve(e);
        }
        if (!settled && e.type === "refused") {
          settled = true;
          // A refusal in words is final; a socket closed before any answer may be worth a retry.
          reject(Object.assign(new Error(e.message), { refused: true, code: e.code }));
        }
      };
      ws.onclose = (ev) => {
        if (!settled) {
          settled = true;
          // A refused upgrade's JSON body is not readable from a WebSocket in a browser.
          reject(
            new Error(
              "The live room did not let this connection in: it may be full or closing. Try again in a moment.",
            ),
          );
          return;
        }
        if (!this.closed) this.emit("disconnected", { code: ev.code });
      };
    });
  }

  send(command) {
    if (this.ws?.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(command));
      return true;
    }
    return false;
  }

  async negotiate(pc, kind, params) {
    const offer = await pc.createOffer();
    await pc.setLocalDescription(offer);
    const q = new URLSearchParams(params);
    // Publishing happens at the origin, watching where the join answer sent us.
    const base = kind === "whip" ? this.originBase : this.base;
    const res = await fetch(`${base}/${kind}?${q}`, {
      method: "POST",
      headers: { "content-type": "application/sdp", authorization: `Bearer ${this.token}` },
      body: pc.localDescription.sdp,
    });
    if (res.status !== 201) throw await errorFrom(res);
    const header = res.headers.get("location");
    const location = header ? new URL(header, base).href : null;
    if (location) this.peers.push(location);
    await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
    return location;
  }

  // Watch: `slots` audio and video receive-only m-lines the room fills as people go on
  // camera, no renegotiation. `track` events say whose media is in which slot.
  async watch() {
    const pc = this.peerConnection();
    this.viewPc = pc;
    pc._location = null;
    for (let i = 0; i < this.slots; i++) {
      pc.addTransceiver("video", { direction: "recvonly" });
      pc.addTransceiver("audio", { direction: "recvonly" });
    }
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed") this.emit("media_failed", { what: "watch" });
      if (pc.connectionState === "connected") this.mediaPath().then((path) => this.emit("media_path", { path }));
    };
    pc._location = await this.negotiate(pc, "whep", { participant: this.you });
    // Tracks placed before the answer arrived.
    for (const [mid, info] of this.slotInfo) this.emit("slot", { mid, info, track: this.slotTrack(mid) });
  }

  slotTrack(mid) {
    const t = this.viewPc?.getTransceivers().find((x) => x.mid === mid);
    return t ? t.receiver.track : null;
  }

  placeTrack(e) {
    const info = { participant: e.participant, kind: e.kind, source: e.source };
    this.slotInfo.set(e.mid, info);
    const track = this.slotTrack(e.mid);
    if (track) this.emit("slot", { mid: e.mid, info, track });
  }

  endTrack(e) {
    const info = this.slotInfo.get(e.mid);
    this.slotInfo.delete(e.mid);
    this.emit("slot_ended", { mid: e.mid, info });
  }

  // Tell the room how big a slot's video is shown, so it forwards a fitting layer.
  view(mid, width, height) {
    this.send({ type: "view", mid, width: Math.round(width), height: Math.round(height) });
  }

  async camera() {
    if (!this.localStream) {
      this.localStream = await navigator.mediaDevices.getUserMedia({
        audio: true,
        video: { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 30 } },
      });
    }
    return this.localStream;
  }

  // Go on camera (the room checks the policy and limits and may refuse with a message).
  async publish(stream) {
    const pc = this.peerConnection();
    this.publishPc = pc;
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "connected") this.mediaPath().then((path) => this.emit("media_path", { path }));
    };
    const audio = stream.getAudioTracks()[0];
    const video = stream.getVideoTracks()[0];
    if (audio) pc.addTransceiver(audio, { direction: "sendonly" });
    if (video) pc.addTransceiver(video, { direction: "sendonly", sendEncodings: SIMULCAST });
    try {
      pc._location = await this.negotiate(pc, "whip", { participant: this.you, source: "camera" });
    } catch (e) {
      pc.close();
      this.publishPc = null;
      throw e;
    }
  }

  async shareScreen() {
    const stream = await navigator.mediaDevices.getDisplayMedia({ video: true, audio: false });
    const pc = this.peerConnection();
    pc.addTransceiver(stream.getVideoTracks()[0], { direction: "sendonly" });
    try {
      pc._location = await this.negotiate(pc, "whip", { participant: this.you, source: "screen" });
    } catch (e) {
      pc.close();
      stream.getTracks().forEach((t) => t.stop());
      throw e;
    }
    this.screenPc = pc;
    this.screenStream = stream;
    stream.getVideoTracks()[0].onended = () => this.stopScreen();
    return stream;
  }

  stopScreen() {
    this.closePeer(this.screenPc);
    this.screenPc = null;
    this.screenStream?.getTracks().forEach((t) => t.stop());
    this.screenStream = null;
    this.emit("screen_stopped", {});
  }

  // Leave the screen; keep watching. `tell` is false when a moderator already removed us.
  stopPublishing({ tell = true } = {}) {
    if (tell) this.send({ type: "stop_camera" });
    this.closePeer(this.publishPc);
    this.publishPc = null;
    if (this.screenPc) this.stopScreen();
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.localStream = null;
  }

  closePeer(pc) {
    if (!pc) return;
    const loc = pc._location;
    pc.close();
    if (loc) {
      const url = new URL(loc, this.base).href;
      this.peers = this.peers.filter((p) => p !== url);
      fetch(url, { method: "DELETE", headers: { authorization: `Bearer ${this.token}` } }).catch(() => {});
    }
  }

  // Whether the events socket alone can be re-opened as the same participant: the new answer
  // sends the page to the same origin pod path it watches at, the room told us its run, and
  // the media connections are still up (a died pod takes them down too).
  resumable(join) {
    const next = LiveRoom.bases(join);
    const alive = (pc) => !pc || pc.connectionState === "connected";
    return (
      this.you != null &&
      this.instance != null &&
      this.base === this.originBase &&
      next.base === this.base &&
      next.originBase === this.originBase &&
      this.viewPc !== null &&
      alive(this.viewPc) &&
      alive(this.publishPc) &&
      alive(this.screenPc)
    );
  }

  // Moves to where a new join answer says (the relay we watched through is leaving, or the
  // room's SFU or the control plane came back after a failure): leaves the old events socket
  // and watching peer without a "disconnected", then connects and watches again. Someone on
  // camera leaves the screen (their place in the room was the old socket's); with
  // `keepCamera` their camera and microphone stay open so the page can publish them again.
  // Resolves with the first event, `resumed: true` when the page carried on as before.
  async move(join, { keepCamera = false } = {}) {
    if (this.resumable(join)) {
      // With this page's own token: the participant is the token's person (a guest gets a
      // new identity with every join answer).
      const you = this.you;
      try {
        const first = await this.connect({ resume: true });
        if (first.type === "welcome" && first.you === you) {
          this.iceServers = join.iceServers || this.iceServers; // fresh TURN credentials
          return Object.assign(first, { resumed: true });
        }
        this.ws.onclose = null;
        this.ws.close();
      } catch {
        // Not resumable (a new run of the room, an expired token): join anew below.
      }
    }
    const old = this.ws;
    if (old) {
      old.onclose = null;
      old.onmessage = null;
      old.close();
    }
    this.closePeer(this.viewPc);
    this.viewPc = null;
    for (const mid of [...this.slotInfo.keys()]) this.endTrack({ mid });
    if (keepCamera) {
      this.closePeer(this.publishPc);
      this.publishPc = null;
      if (this.screenPc) this.stopScreen();
    } else if (this.publishPc) {
      this.stopPublishing({ tell: false });
    }
    this.setJoin(join);
    const first = await this.connect();
    if (first.type === "welcome") await this.watch();
    return first;
  }

  // Video frames decoded across all watched slots (for the page's own diagnostics).
  async framesDecoded() {
    if (!this.viewPc) return 0;
    let frames = 0;
    (await this.viewPc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
    });
    return frames;
  }

  close() {
    this.closed = true;
    for (const url of this.peers) {
      fetch(url, {
        method: "DELETE",
        keepalive: true,
        headers: { authorization: `Bearer ${this.token}` },
      }).catch(() => {});
    }
    this.peers = [];
    for (const pc of [this.viewPc, this.publishPc, this.screenPc]) pc?.close();
    this.localStream?.getTracks().forEach((t) => t.stop());
    this.screenStream?.getTracks().forEach((t) => t.stop());
    this.ws?.close();
  }
}
