// Small DOM helpers and the pieces every page shares: notices, counts, chat, video tiles,
// name labels and the moderation panel. No framework: elements are built with `h`.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "style" && typeof v === "object") Object.assign(el.style, v);
    else if (k in el && typeof v !== "string") el[k] = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

export const $ = (sel, root = document) => root.querySelector(sel);

export function clear(el, ...children) {
  el.replaceChildren();
  for (const c of children.flat()) if (c) el.append(c);
  return el;
}

// The page-wide notice under the header: refusals and state messages in plain words.
export function notice(message, kind = "error") {
  const box = $("#notice");
  if (!box) return;
  if (!message) {
    box.hidden = true;
    box.textContent = "";
    return;
  }
  box.hidden = false;
  box.className = `notice ${kind}`;
  box.setAttribute("role", kind === "error" ? "alert" : "status");
  box.textContent = message;
}

export function setTitle(text) {
  document.title = `${text} · Roundtable`;
  const t = $("#title");
  if (t) t.textContent = text;
}

// "12 watching · 3 on camera", kept live by the room's `counts` events.
export function countsView() {
  const watching = h("b", { "data-count": "watching" }, "0");
  const onCamera = h("b", { "data-count": "on-camera" }, "0");
  const el = h(
    "div",
    { class: "counts", "aria-live": "polite" },
    h("span", {}, watching, " watching"),
    h("span", {}, onCamera, " on camera"),
  );
  return {
    el,
    set(c) {
      watching.textContent = String(c.watching);
      onCamera.textContent = String(c.on_camera ?? c.onCamera ?? 0);
    },
  };
}

function time(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  return d.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
}

// A chat panel: a list of messages and a box to write one. `send(text)` delivers it.
export function chatPanel(title, send, { id } = {}) {
  const list = h("ol", { class: "messages", "aria-live": "polite" });
  const input = h("input", {
    type: "text",
    name: "text",
    maxLength: 2000,
    placeholder: "Write a message",
    autocomplete: "off",
    "aria-label": `Message to ${title}`,
  });
  const form = h(
    "form",
    {
      class: "chat-form",
      onsubmit: (e) => {
        e.preventDefault();
        const text = input.value.trim();
        if (!text) return;
        if (send(text) !== false) input.value = "";
      },
    },
    input,
    h("button", { type: "submit" }, "Send"),
  );
  const el = h("section", { class: "chat", id }, h("h2", {}, title), list, form);
  return {
    el,
    add(name, text, atMs) {
      list.append(
        h(
          "li",
          {},
          h("span", { class: "who" }, name || "Someone"),
          h("span", { class: "when" }, time(atMs)),
          h("p", { class: "text" }, text),
        ),
      );
      list.scrollTop = list.scrollHeight;
    },
    reset(messages) {
      list.replaceChildren();
      for (const m of messages) this.add(m.name, m.text, m.at_ms);
    },
    disable(reason) {
      input.disabled = true;
      input.placeholder = reason;
    },
  };
}

export function initials(name) {
  return (name || "?")
    .split(/\s+/)
    .filter(Boolean)
    .slice(0, 2)
    .map((w) => w[0].toUpperCase())
    .join("");
}

// A person's name label: image (or initials), name and headline on their chosen colour.
export function nameLabel(profile = {}, { small = false } = {}) {
  const color = /^#[0-9a-fA-F]{3,8}$/.test(profile.color || "") ? profile.color : "#37474f";
  const avatar = profile.image
    ? h("img", { class: "avatar", src: profile.image, alt: "" })
    : h("span", { class: "avatar", "aria-hidden": "true" }, initials(profile.name));
  return h(
    "div",
    { class: small ? "label small" : "label", style: { background: color } },
    avatar,
    h(
      "span",
      { class: "label-text" },
      h("span", { class: "label-name" }, profile.name || "Guest"),
      profile.headline ? h("span", { class: "label-headline" }, profile.headline) : null,
    ),
  );
}

// The moderation panel: share requests with each requester's profile (approve / decline),
// and the people on camera (remove). Join requests of a locked room use the same shape.
export function moderationPanel({ title, empty, actions }) {
  const list = h("ul", { class: "requests" });
  const emptyNote = h("p", { class: "muted" }, empty);
  const el = h("section", { class: "moderation", "aria-label": title }, h("h2", {}, title), emptyNote, list);
  const rows = new Map();
  const refresh = () => {
    emptyNote.hidden = rows.size > 0;
  };
  refresh();
  return {
    el,
    add(info) {
      if (rows.has(info.id)) return;
      // Yourself: listed, without buttons aimed at you.
      const buttons = info.you
        ? [h("span", { class: "muted" }, "you")]
        : actions.map(([label, fn, cls]) => h("button", { type: "button", class: cls || "", onclick: () => fn(info.id) }, label));
      const row = h(
        "li",
        { "data-participant": String(info.id) },
        nameLabel(info.profile, { small: true }),
        h("span", { class: "actions" }, buttons),
      );
      rows.set(info.id, row);
      list.append(row);
      refresh();
    },
    remove(id) {
      rows.get(id)?.remove();
      rows.delete(id);
      refresh();
    },
    reset(infos) {
      for (const id of [...rows.keys()]) this.remove(id);
      for (const i of infos) this.add(i);
    },
    get size() {
      return rows.size;
    },
  };
}

export function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, label);
}

// Runs an async action from a button, showing any refusal in the page notice.
export function guarded(fn) {
  return async (...args) => {
    try {
      await fn(...args);
    } catch (e) {
      notice(e.message || String(e));
    }
  };
}
