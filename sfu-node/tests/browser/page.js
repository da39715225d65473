// A minimal Roundtable client: publish over WHIP or watch over WHEP, with the room-events
// WebSocket for counts. Query: ?role=publish|watch&sfu=http://host:port&room=R&token=JWT
const q = new URLSearchParams(location.search);
const sfu = q.get("sfu");
const room = q.get("room");
const token = q.get("token");
const state = (s) => (document.getElementById("state").textContent = s);
window.errors = [];

async function negotiate(pc, path) {
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const res = await fetch(`${sfu}/rooms/${room}/${path}`, {
    method: "POST",
    headers: { "content-type": "application/sdp", authorization: `Bearer ${token}` },
    body: pc.localDescription.sdp,
  });
  if (res.status !== 201) {
    throw new Error(`${path}: ${res.status} ${await res.text()}`);
  }
  await pc.setRemoteDescription({ type: "answer", sdp: await res.text() });
}

function events(onWelcome) {
  const ws = new WebSocket(`${sfu.replace(/^http/, "ws")}/rooms/${room}/events?token=${token}`);
  ws.onmessage = (m) => {
    const e = JSON.parse(m.data);
    const counts = e.type === "counts" ? e : e.type === "welcome" ? e.counts : null;
    if (counts) {
      document.getElementById("watching").textContent = counts.watching;
      document.getElementById("on-camera").textContent = counts.on_camera;
    }
    if (e.type === "welcome") onWelcome(e);
  };
  return ws;
}

async function publish() {
  const stream = await navigator.mediaDevices.getUserMedia({
    audio: true,
    video: { width: 1280, height: 720, frameRate: 30 },
  });
  const pc = new RTCPeerConnection();
  window.pc = pc;
  pc.addTransceiver(stream.getAudioTracks()[0], { direction: "sendonly" });
  pc.addTransceiver(stream.getVideoTracks()[0], {
    direction: "sendonly",
    sendEncodings: [
      { rid: "q", scaleResolutionDownBy: 4, maxBitrate: 150_000 },
      { rid: "h", scaleResolutionDownBy: 2, maxBitrate: 500_000 },
      { rid: "f", maxBitrate: 1_500_000 },
    ],
  });
  await negotiate(pc, "whip");
  state("publishing");
}

async function watch() {
  const welcome = await new Promise((resolve) => {
    window.ws = events(resolve);
  });
  const pc = new RTCPeerConnection();
  window.pc = pc;
  for (let i = 0; i < 2; i++) {
    pc.addTransceiver("audio", { direction: "recvonly" });
    pc.addTransceiver("video", { direction: "recvonly" });
  }
  pc.ontrack = (ev) => {
    if (ev.track.kind !== "video") return;
    const v = document.createElement("video");
    v.autoplay = true;
    v.muted = true;
    v.playsInline = true;
    v.srcObject = new MediaStream([ev.track]);
    document.getElementById("videos").appendChild(v);
  };
  const path = `whep?participant=${welcome.you}`;
  await negotiate(pc, path);
  state("watching");
}

window.framesDecoded = async () => {
  const stats = await window.pc.getStats();
  let frames = 0;
  stats.forEach((s) => {
    if (s.type === "inbound-rtp" && s.kind === "video") frames += s.framesDecoded || 0;
  });
  return frames;
};

(q.get("role") === "publish" ? publish() : watch()).catch((e) => {
  window.errors.push(String(e));
  state(`error: ${e}`);
});
