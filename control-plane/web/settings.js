// `/settings`: a host's profile at any time: display name, headline, avatar (cropped to a
// square on the server), the name label's colour and browser notifications; the email
// address and URL shown but fixed; and deleting the account, confirmed by typing the URL.

import { get, post, api } from "./api.js";
import { main, refuse, refusedPage, whoami } from "./page.js";
import { clear, h, nameLabel, notice, setTitle } from "./ui.js";

async function uploadAvatar(file) {
  let res;
  try {
    res = await fetch("/api/account/avatar", { method: "POST", body: file, credentials: "same-origin", headers: { "content-type": file.type || "application/octet-stream" } });
  } catch {
    throw new Error("The server cannot be reached. Check your connection.");
  }
  const body = await res.json().catch(() => ({}));
  if (!res.ok) throw Object.assign(new Error(body.message || `Upload failed (HTTP ${res.status}).`), { status: res.status });
  return body;
}

function preview(account, fields) {
  return nameLabel({ name: fields.name.value || account.displayName, headline: fields.headline.value, image: account.avatar, color: fields.color.value });
}

async function run() {
  setTitle("Profile settings");
  const who = await whoami();
  if (!who.signedIn) {
    refusedPage({ status: 401, message: "Sign in to change your profile." });
    return;
  }
  let account;
  try {
    account = await get("/api/account");
  } catch (e) {
    refusedPage(e);
    return;
  }
  if (!account.onboarded) {
    location.replace("/welcome?next=/settings");
    return;
  }
  const fields = {
    name: h("input", { id: "display-name", maxlength: 60, required: true, value: account.displayName }),
    headline: h("input", { id: "headline", maxlength: 100, value: account.headline, placeholder: "What you do, in a few words" }),
    color: h("input", { id: "label-color", type: "color", value: account.color || "#37474f" }),
    notifications: h("input", { id: "notifications", type: "checkbox", checked: account.notifications }),
    avatar: h("input", { id: "avatar", type: "file", accept: "image/png,image/jpeg,image/webp" }),
  };
  const labelSlot = h("div", { id: "label-preview" }, preview(account, fields));
  const refresh = () => labelSlot.replaceChildren(preview(account, fields));
  for (const f of [fields.name, fields.headline, fields.color]) f.addEventListener("input", refresh);
  fields.notifications.addEventListener("change", async () => {
    if (fields.notifications.checked && "Notification" in window && Notification.permission === "default") {
      const answer = await Notification.requestPermission();
      if (answer !== "granted") notice("Your browser will not show notifications until you allow them for this site.", "info");
    }
  });
  fields.avatar.addEventListener("change", async () => {
    const file = fields.avatar.files[0];
    if (!file) return;
    try {
      account = await uploadAvatar(file);
      refresh();
      notice("Your picture was saved, cropped to a square.", "ok");
    } catch (e) {
      refuse(e);
    }
    fields.avatar.value = "";
  });
  const profile = h(
    "form",
    {
      class: "card",
      id: "profile",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          account = await api("PUT", "/api/account/profile", {
            displayName: fields.name.value.trim(),
            headline: fields.headline.value.trim(),
            color: fields.color.value,
            notifications: fields.notifications.checked,
          });
          notice("Your profile was saved.", "ok");
          refresh();
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Your name label"),
    h("p", { class: "muted" }, "Shown on your tile, in chat and in moderation panels whenever you join signed in."),
    labelSlot,
    h("label", { for: "display-name" }, "Display name"),
    fields.name,
    h("label", { for: "headline" }, "Headline"),
    fields.headline,
    h("label", { for: "avatar" }, "Picture (PNG, JPEG or WebP, up to 5 MB; cropped to a centred square)"),
    fields.avatar,
    h("label", { for: "label-color" }, "Label colour"),
    fields.color,
    h("label", { class: "check" }, fields.notifications, " Browser notifications when someone asks to join or to share while this tab is hidden"),
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "primary", id: "save-profile" }, "Save")),
  );
  const fixed = h(
    "section",
    { class: "card", id: "fixed" },
    h("h2", {}, "Account"),
    h("p", {}, "Email: ", h("strong", {}, account.email)),
    h("p", { class: "muted", id: "email-fixed" }, account.operatorContact
      ? `Your email address cannot be changed here. To change it, contact the people who run this platform: ${account.operatorContact}.`
      : "Your email address cannot be changed here. To change it, contact the people who run this platform."),
    h("p", {}, "Your URL: ", h("a", { href: `/${account.slug}` }, `${location.host}/${account.slug}`), h("span", { class: "muted" }, " (chosen at sign-up; it cannot change)")),
  );
  const confirm = h("input", { id: "delete-confirm", autocomplete: "off", placeholder: account.slug });
  const deletion = h(
    "form",
    {
      class: "card danger",
      id: "delete-account",
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          await post("/api/account/delete", { confirm: confirm.value.trim() });
          location.href = "/?deleted=1";
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Delete your account"),
    h("p", {}, "Your rooms are deleted, your profile, picture and sign-in data removed, and your chat messages anonymised. A record that the account was deleted is kept. Your URL is never given to anyone else."),
    h("label", { for: "delete-confirm" }, `Type ${account.slug} to confirm`),
    confirm,
    h("div", { class: "form-row" }, h("button", { type: "submit", class: "danger" }, "Delete my account")),
  );
  clear(main(), h("div", { class: "narrow" }, profile, fixed, deletion));
}

run().catch((e) => notice(e.message || String(e)));
