// A meeting room `/{host}/{slug}`: no account needed. The steps, each only when it applies:
//   email   — an email-domain-restricted room sends a unique access link; only it lets you in;
//   passcode — asked unless the link carries `?passcode=`;
//   label   — display name, headline, image and colour of your name label (prefilled from
//             your last join when signed in); in a meeting also the camera check; a webinar
//             asks only for a display name and never touches the camera;
//   lobby   — a locked room: "Ask to join", any host lets you in;
//   room    — the video wall, hosts admit joiners and lock the room.

import { notifyIfHidden } from "./notify.js";
import { enc, get, pathParams, post, query, sleep } from "./api.js";
import { main, onLeave, refuse, whoami, refusedPage } from "./page.js";
import { RoomView, cameraError } from "./roomview.js";
import { button, clear, h, moderationPanel, nameLabel, notice, setTitle } from "./ui.js";

const COLORS = ["#1e63d6", "#2e7d32", "#c62828", "#6a1b9a", "#ef6c00", "#00838f", "#37474f", "#ad1457"];
const MAX_START_WAIT_MS = 60_000;

const state = {
  host: "",
  slug: "",
  info: null,
  me: null,
  passcode: query("passcode") || "",
  access: query("access") || "",
  label: { name: "", headline: "", image: "", color: COLORS[0] },
  stream: null,
};

const base = () => `/api/rooms/${enc(state.host)}/${enc(state.slug)}`;
const webinar = () => state.info.theme === "Webinar";
// Webinar attendees only watch: no camera check, only a display name. Hosts present.
const watchOnly = () => webinar() && !state.info.isHost;

function card(...children) {
  return h("div", { class: "card narrow" }, ...children);
}

function emailStep() {
  const domains = state.info.emailDomains || [];
  const email = h("input", { type: "email", id: "access-email", required: true, autocomplete: "email", placeholder: `you@${domains[0] || "example.com"}` });
  const form = h(
    "form",
    {
      id: "access-form",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await post(`${base()}/access-link`, { email: email.value.trim() });
          clear(
            main(),
            card(
              h("h2", {}, "Check your email"),
              h("p", { id: "link-sent" }, `We sent a link to ${email.value.trim()}. Open it to join. It works once and expires soon.`),
            ),
          );
          notice(null);
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "This room is for invited email domains"),
    h("p", { class: "muted" }, `Give your email address at ${domains.join(", ")}. We email you a personal link to join.`),
    h("label", { for: "access-email" }, "Email"),
    email,
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, "Email me a link")),
  );
  clear(main(), card(form));
}

function passcodeStep() {
  const input = h("input", { id: "passcode", type: "password", required: true, autocomplete: "off", inputmode: "numeric", value: state.passcode });
  clear(
    main(),
    card(
      h(
        "form",
        {
          id: "passcode-form",
          // Checked here, before the name label: a wrong passcode is said at once.
          onsubmit: async (e) => {
            e.preventDefault();
            const given = input.value.trim();
            notice(null);
            try {
              await post(`${base()}/passcode`, { passcode: given });
            } catch (err) {
              refuse(err);
              input.select();
              return;
            }
            state.passcode = given;
            labelStep();
          },
        },
        h("h2", {}, "Enter the passcode"),
        h("p", { class: "muted" }, "The host gave a passcode for this room."),
        h("label", { for: "passcode" }, "Passcode"),
        input,
        h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, "Continue")),
      ),
    ),
  );
  input.focus();
}

// An image from the device, cropped to a centred square and made small enough to travel in
// the join token.
function squareImage(file, size = 64) {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.onload = () => {
      const side = Math.min(img.naturalWidth, img.naturalHeight);
      const c = document.createElement("canvas");
      c.width = c.height = size;
      c.getContext("2d").drawImage(img, (img.naturalWidth - side) / 2, (img.naturalHeight - side) / 2, side, side, 0, 0, size, size);
      URL.revokeObjectURL(img.src);
      resolve(c.toDataURL("image/jpeg", 0.8));
    };
    img.onerror = () => reject(new Error("That file is not an image we can read."));
    img.src = URL.createObjectURL(file);
  });
}

async function labelStep() {
  const l = state.label;
  const preview = h("div", { class: "label-preview" });
  const redraw = () => clear(preview, nameLabel(watchOnly() ? { name: l.name || "Your name", color: l.color } : { ...l, name: l.name || "Your name" }));
  const field = (id, text, key, attrs = {}) => {
    const input = h("input", { id, value: l[key] || "", ...attrs, oninput: (e) => ((l[key] = e.target.value), redraw()) });
    return [h("label", { for: id }, text), input];
  };
  const swatches = h(
    "div",
    { class: "swatches", role: "group", "aria-label": "Label colour" },
    COLORS.map((c) =>
      h("button", {
        type: "button",
        style: { background: c },
        "aria-label": `Colour ${c}`,
        "aria-pressed": String(l.color === c),
        onclick: (e) => {
          l.color = c;
          for (const b of swatches.querySelectorAll("button")) b.setAttribute("aria-pressed", String(b === e.target));
          redraw();
        },
      }),
    ),
    h("input", { type: "color", id: "label-color", value: l.color, "aria-label": "Any colour", oninput: (e) => ((l.color = e.target.value), redraw()) }),
  );
  const image = h("input", {
    type: "file",
    id: "label-image",
    accept: "image/*",
    onchange: async (e) => {
      const f = e.target.files[0];
      if (!f) return;
      try {
        l.image = await squareImage(f);
        redraw();
      } catch (err) {
        notice(err.message);
      }
    },
  });
  const joinBtn = h("button", { type: "submit", class: "primary", id: "join" }, state.info.locked && !state.info.isHost ? "Ask to join" : "Join");
  const form = h(
    "form",
    {
      class: "card",
      id: "label-form",
      onsubmit: (e) => {
        e.preventDefault();
        if (!l.name.trim()) {
          notice("Enter the name others will see.");
          return;
        }
        joinBtn.disabled = true;
        join().finally(() => (joinBtn.disabled = false));
      },
    },
    h("h2", {}, watchOnly() ? "Your display name" : "Your name label"),
    ...field("label-name", "Display name", "name", { required: true, maxLength: 80, autocomplete: "name" }),
    watchOnly() ? null : field("label-headline", "Headline", "headline", { maxLength: 120, placeholder: "What you do, in a few words" }),
    watchOnly() ? null : [h("label", { for: "label-image" }, "Image"), image],
    watchOnly() ? null : [h("label", {}, "Background colour"), swatches],
    h("div", { style: { margin: "14px 0" } }, preview),
    h("div", { class: "form-row" }, joinBtn),
  );
  redraw();
  if (watchOnly()) {
    // Webinar attendees do not publish: no device check at all.
    clear(main(), h("div", { class: "join-layout no-preview" }, form));
    return;
  }
  const video = h("video", { autoplay: true, muted: true, playsInline: true });
  const previewBox = h("div", { class: "preview", id: "device-check" }, video, h("p", { class: "empty-text" }, "Starting your camera…"));
  clear(main(), h("div", { class: "join-layout" }, h("div", {}, previewBox, h("p", { class: "muted" }, "Check your camera and microphone before you join.")), form));
  try {
    state.stream = state.stream || (await navigator.mediaDevices.getUserMedia({ audio: true, video: { width: { ideal: 1280 }, height: { ideal: 720 } } }));
    video.srcObject = state.stream;
  } catch (e) {
    notice(`${cameraError(e)} You can still join and watch.`);
  }
}

async function join() {
  notice(null);
  const body = {
    label: { ...state.label },
    passcode: state.passcode || undefined,
    access: state.access || undefined,
  };
  const started = Date.now();
  let answer;
  for (;;) {
    try {
      answer = await post(`${base()}/join`, body);
    } catch (e) {
      refuse(e);
      if (e.code === "wrong_passcode" || e.code === "passcode_required") {
        passcodeStep();
        refuse(e);
      } else if ((e.code === "link_invalid" || e.code === "access_link_required") && state.info.emailDomains?.length) {
        state.access = "";
        emailStep();
        refuse(e);
      }
      return;
    }
    if (answer.status !== 202 && !answer.starting) break;
    if (Date.now() - started > MAX_START_WAIT_MS) {
      notice("The room is taking too long to start. Try again in a minute.");
      return;
    }
    notice("The room is starting…", "info");
    await sleep(answer.retryAfterMs || 1000);
  }
  notice(null);
  await enter(answer);
}

// A new join answer for a page already in the room (its SFU or the control plane came back
// after a failure): the same request as the first join; a room that is starting again is
// waited for. Throws what the API said, for the page's reconnect logic to judge.
async function rejoinAnswer() {
  const body = { label: { ...state.label }, passcode: state.passcode || undefined, access: state.access || undefined };
  const started = Date.now();
  for (;;) {
    const answer = await post(`${base()}/join`, body);
    if (answer.status !== 202 && !answer.starting) return answer;
    if (Date.now() - started > MAX_START_WAIT_MS) throw Object.assign(new Error("The room is taking too long to start."), { status: 503 });
    await sleep(answer.retryAfterMs || 1000);
  }
}

async function enter(answer) {
  const role = answer.role || {};
  const view = new RoomView(answer, {
    kind: "room",
    theme: state.info.theme,
    policy: "Open",
    maxOnCamera: state.info.maxParticipants || 12,
    chatTitle: "Chat",
    emptyText: webinar() ? "The hosts have not started presenting yet." : "Nobody is on camera yet.",
    profile: state.label,
    stream: watchOnly() && !role.host ? null : state.stream,
    rejoin: rejoinAnswer,
  });
  onLeave(() => view.close());

  const lockBtn = button("Lock room", async () => {
    const locked = !view.locked;
    view.live.send({ type: "lock", locked });
    try {
      await post(`${base()}/lock`, { locked });
    } catch (e) {
      refuse(e);
    }
  }, { "data-action": "lock", hidden: !role.host });
  const setLocked = (locked) => {
    view.locked = locked;
    lockBtn.textContent = locked ? "Unlock room" : "Lock room";
  };
  setLocked(Boolean(state.info.locked));
  view.live.on("locked", (e) => setLocked(e.locked));

  let joins = null;
  if (role.host) {
    joins = moderationPanel({
      title: "Asking to join",
      empty: "Nobody is waiting.",
      actions: [
        ["Let in", (id) => view.live.send({ type: "admit", participant: id }), "primary"],
        ["Decline", (id) => view.live.send({ type: "deny", participant: id })],
      ],
    });
    view.live.on("welcome", (e) => joins.reset(e.join_requests || []));
    view.live.on("join_requested", (e) => {
      joins.add(e.participant);
      notice(`${e.participant.profile.name || "Someone"} is asking to join.`, "info");
      notifyIfHidden("Someone is asking to join", `${e.participant.profile.name || "Someone"} wants to join ${document.title}.`);
    });
    view.live.on("join_resolved", (e) => joins.remove(e.participant));
  }

  const roomUi = () => {
    const side = h("aside", { class: "side" }, joins ? h("div", { class: "panel", id: "join-requests" }, joins.el) : null, view.moderationEl(), view.chat.el);
    const head = h("div", { class: "room-head" }, view.counts.el, lockBtn);
    clear(main(), h("div", { class: "room-layout" }, h("section", { class: "stage-area" }, head, view.tiles.el, view.controls), side));
  };

  // In a meeting you come in on camera with the camera you just checked.
  const comeIn = async () => {
    roomUi();
    await view.live.watch();
    if (view.mode === "share" && view.opts.stream) await view.goOnCamera();
  };

  view.live.on("refused", (e) => {
    if (e.code === "join_denied") {
      clear(main(), h("div", { class: "waiting-screen", id: "denied" }, h("p", {}, e.message)));
    }
  });

  let first;
  try {
    first = await view.live.connect();
  } catch (e) {
    refuse(e);
    return;
  }
  if (first.type === "waiting") {
    clear(
      main(),
      h(
        "div",
        { class: "waiting-screen", id: "lobby" },
        h("div", { class: "spinner" }),
        h("p", {}, "You asked to join. A host will let you in."),
        h("p", { class: "muted" }, first.message),
        nameLabel(state.label),
      ),
    );
    view.live.on("welcome", (e) => {
      if (e.resumed) return; // the same lobby, re-connected
      notice("A host let you in.", "ok");
      comeIn().catch(refuse);
    });
    return;
  }
  await comeIn();
}

async function run() {
  const [host, slug, ...rest] = pathParams();
  if (!host || !slug || rest.length) {
    notice("This link is not a room link.");
    return;
  }
  state.host = host;
  state.slug = slug;
  state.me = await whoami();
  try {
    state.info = await get(base());
  } catch (e) {
    refusedPage(e);
    return;
  }
  setTitle(state.info.title || `${host}/${slug}`);
  const prefill = state.info.label || state.me.label;
  if (prefill) Object.assign(state.label, Object.fromEntries(Object.entries(prefill).filter(([, v]) => v)));
  else if (state.me.name) state.label.name = state.me.name;
  // Hosts come in with neither passcode nor access link.
  if (!state.info.isHost) {
    if (state.info.emailDomains?.length && !state.access) return emailStep();
    if (state.info.passcode && !state.passcode) return passcodeStep();
  }
  return labelStep();
}

run();
