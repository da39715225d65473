// `/welcome`: onboarding, once, right after a host's first sign-in: what they will use
// Roundtable for, their display name, and the URL slug that prefixes every room they create.
// The slug is checked while it is typed, and the form says it can never change.

import { enc, get, post, query } from "./api.js";
import { main, refuse, refusedPage, whoami } from "./page.js";
import { clear, h, notice, setTitle } from "./ui.js";

function afterwards(account) {
  const next = query("next");
  const local = next && /^\/[\x21-\x7e]*$/.test(next) && !next.startsWith("//") && !next.includes("\\");
  return local && next !== "/" ? next : `/${enc(account.slug)}`;
}

async function run() {
  setTitle("Welcome");
  const who = await whoami();
  if (!who.signedIn) {
    refusedPage({ status: 401, message: "Sign in first: then choose your URL." });
    return;
  }
  let account;
  try {
    account = await get("/api/account");
  } catch (e) {
    refusedPage(e);
    return;
  }
  if (account.onboarded) {
    location.replace(afterwards(account));
    return;
  }
  const useCase = h(
    "select",
    { id: "use-case", name: "useCase", required: true },
    h("option", { value: "" }, "Choose one…"),
    account.useCases.map((u) => h("option", { value: u.value }, u.label)),
  );
  const name = h("input", { id: "display-name", name: "displayName", required: true, maxlength: 60, value: account.displayName || "", autocomplete: "name" });
  const slug = h("input", { id: "slug", name: "slug", required: true, minlength: 3, maxlength: 30, autocomplete: "off", spellcheck: false, placeholder: "your-name" });
  const verdict = h("p", { id: "slug-verdict", class: "muted", role: "status" }, "3 to 30 letters, digits or '-'.");
  const submit = h("button", { type: "submit", class: "primary", id: "onboard" }, "Create my account");
  let checked = null;
  let timer;
  const check = async () => {
    const wanted = slug.value.trim();
    if (!wanted) return;
    try {
      const ok = await get(`/api/account/slug?slug=${enc(wanted)}`);
      checked = ok.slug;
      verdict.className = "ok";
      verdict.textContent = `${location.host}/${ok.slug} is yours to take.`;
      submit.disabled = false;
    } catch (e) {
      checked = null;
      verdict.className = "error";
      verdict.textContent = e.message;
      submit.disabled = true;
    }
  };
  slug.addEventListener("input", () => {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  });
  const form = h(
    "form",
    {
      class: "card narrow",
      id: "onboarding",
      onsubmit: async (e) => {
        e.preventDefault();
        await check();
        if (!checked) return;
        try {
          const done = await post("/api/account/onboarding", { useCase: useCase.value, displayName: name.value.trim(), slug: slug.value.trim() });
          notice(null);
          location.href = afterwards(done);
        } catch (err) {
          refuse(err);
        }
      },
    },
    h("h2", {}, "Set up your host account"),
    h("p", { class: "muted" }, `Signed in as ${account.email}.`),
    h("label", { for: "use-case" }, "What will you use Roundtable for?"),
    useCase,
    h("label", { for: "display-name" }, "Display name"),
    name,
    h("label", { for: "slug" }, "Your URL"),
    h("div", { class: "slug-row" }, h("span", { class: "muted" }, `${location.host}/`), slug),
    verdict,
    h("p", { class: "warning", id: "slug-forever" }, "Choose carefully: your URL prefixes every room you create and can never be changed afterwards."),
    h("div", { class: "form-row" }, submit),
  );
  clear(main(), form);
}

run().catch((e) => notice(e.message || String(e)));
