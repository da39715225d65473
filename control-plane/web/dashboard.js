// `/<slug>`: a host's dashboard. Their rooms with live counts; create, edit and delete the ones
// made here (rooms their platform declared with kubectl or manifests are listed read-only).
// Anyone else sees the host's name label.

import { api, del, enc, get, pathParams, post } from "./api.js";
import { main, refuse, refusedPage, whoami } from "./page.js";
import { clear, h, nameLabel, notice, setTitle } from "./ui.js";

const [slug] = pathParams();
const REFRESH_MS = 5000;

function list(value) {
  return value.split(/[\s,]+/).map((s) => s.trim()).filter(Boolean);
}

// The create/edit form; `room` is the room edited (its URL cannot change).
function roomForm(room, done) {
  const f = {
    slug: h("input", { id: "room-slug", required: true, minlength: 3, maxlength: 30, value: room ? room.slug : "", disabled: !!room }),
    title: h("input", { id: "room-title", maxlength: 200, value: room ? room.title || "" : "" }),
    theme: h("select", { id: "room-theme" }, ["Meeting", "Webinar"].map((t) => h("option", { value: t, selected: room && room.theme === t }, t))),
    locked: h("input", { id: "room-locked", type: "checkbox", checked: room ? room.locked : false }),
    passcode: h("input", { id: "room-passcode", maxlength: 64, placeholder: room && room.passcode ? "unchanged (type a new one, or clear below)" : "none" }),
    clearPasscode: h("input", { id: "room-clear-passcode", type: "checkbox" }),
    domains: h("input", { id: "room-domains", value: room ? room.emailDomains.join(", ") : "", placeholder: "example.com" }),
    coHosts: h("input", { id: "room-cohosts", value: room ? room.coHosts.join(", ") : "", placeholder: "someone@example.com" }),
  };
  return h(
    "form",
    {
      class: "card",
      id: room ? `edit-${room.slug}` : "new-room",
      onsubmit: async (e) => {
        e.preventDefault();
        const body = {
          slug: f.slug.value.trim(),
          title: f.title.value.trim(),
          theme: f.theme.value,
          locked: f.locked.checked,
          emailDomains: list(f.domains.value),
          coHosts: list(f.coHosts.value),
        };
        if (f.clearPasscode.checked) body.passcode = "";
        else if (f.passcode.value.trim()) body.passcode = f.passcode.value.trim();
        try {
          if (room) await api("PUT", `/api/hosts/${enc(slug)}/rooms/${enc(room.slug)}`, body);
          else await post(`/api/hosts/${enc(slug)}/rooms`, body);
          notice(room ? "The room was saved." : `Your room is ready at ${location.host}/${slug}/${body.slug}.`, "ok");
          // A new room's form is empty again for the next one.
          if (!room) e.target.reset();
          done();
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, room ? `Edit ${room.title || room.slug}` : "Create a room"),
    h("label", { for: "room-slug" }, room ? "URL (cannot change)" : `URL: ${location.host}/${slug}/…`),
    f.slug,
    h("label", { for: "room-title" }, "Title"),
    f.title,
    h("label", { for: "room-theme" }, "Theme"),
    f.theme,
    h("label", { class: "check" }, f.locked, " Locked: people ask to join and a host lets them in"),
    h("label", { for: "room-passcode" }, "Passcode"),
    f.passcode,
    room && room.passcode ? h("label", { class: "check" }, f.clearPasscode, " Remove the passcode") : null,
    h("label", { for: "room-domains" }, "Only these email domains may join (comma-separated; empty: anyone)"),
    f.domains,
    h("label", { for: "room-cohosts" }, "Co-hosts' email addresses"),
    f.coHosts,
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary" }, room ? "Save room" : "Create room"), room ? h("button", { type: "button", onclick: done }, "Cancel") : null),
  );
}

function roomRow(room, refresh, editSlot) {
  const counts = `${room.watching} watching · ${room.onCamera} on camera`;
  return h(
    "li",
    { class: "room-row", "data-room": room.slug },
    h("a", { href: room.url, class: "room-link" }, room.title || room.slug),
    h("span", { class: "muted" }, ` ${location.host}${room.url} · ${room.theme}${room.locked ? " · locked" : ""}${room.passcode ? " · passcode" : ""}`),
    h("span", { class: "counts", "data-phase": room.phase || "Idle" }, ` ${room.phase || "Idle"} · ${counts}`),
    room.editable
      ? h(
          "span",
          { class: "actions" },
          h("button", { type: "button", class: "link", onclick: () => clear(editSlot, roomForm(room, () => { clear(editSlot); refresh(); })) }, "Edit"),
          h("button", {
            type: "button",
            class: "link danger",
            onclick: async () => {
              if (!confirm(`Delete ${room.title || room.slug}? People in it are disconnected.`)) return;
              try {
                await del(`/api/hosts/${enc(slug)}/rooms/${enc(room.slug)}`);
                refresh();
              } catch (e) {
                refuse(e);
              }
            },
          }, "Delete"),
        )
      : h("span", { class: "muted read-only" }, " (declared by the platform: read-only)"),
  );
}

async function run() {
  const who = await whoami();
  let board;
  try {
    board = await get(`/api/hosts/${enc(slug)}`);
  } catch (e) {
    refusedPage(e);
    return;
  }
  setTitle(board.mine ? "Your rooms" : board.displayName);
  const profile = h("section", { class: "card", id: "host-profile" }, nameLabel({ name: board.displayName, headline: board.headline, image: board.avatar, color: board.color }));
  if (!board.mine) {
    clear(main(), h("div", { class: "narrow" }, profile, who.signedIn ? null : h("p", { class: "muted" }, "Open a room's link to join it.")));
    return;
  }
  const rooms = h("ul", { id: "rooms", class: "rooms" });
  const editSlot = h("div", { id: "edit-slot" });
  const refresh = async () => {
    try {
      board = await get(`/api/hosts/${enc(slug)}`);
    } catch (e) {
      refuse(e);
      return;
    }
    clear(rooms, board.rooms.length ? board.rooms.map((r) => roomRow(r, refresh, editSlot)) : h("li", { class: "muted" }, "No rooms yet: create your first below."));
  };
  await refresh();
  setInterval(() => {
    if (!document.hidden && !editSlot.childElementCount) refresh();
  }, REFRESH_MS);
  clear(
    main(),
    h(
      "div",
      { class: "narrow" },
      profile,
      h("p", {}, h("a", { href: "/settings", id: "settings-link" }, "Profile settings")),
      h("section", { class: "card" }, h("h2", {}, "Rooms"), rooms),
      editSlot,
      roomForm(null, refresh),
    ),
  );
}

run().catch((e) => notice(e.message || String(e)));
