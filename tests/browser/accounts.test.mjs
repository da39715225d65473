// A host's account end to end in a real browser: sign-up through Keycloak's own login page
// (the real OpenID Connect provider, started here), onboarding with the URL checked while it
// is typed, an avatar uploaded and cropped to a square by the server, a room created on the
// dashboard, and a guest joining that room who sees the host's name label from the profile.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { launchBrowser, person, seesVideoOf, shot, startKeycloak, startRoundtable, startSmtpSink, tab, until, workDir } from "./harness.mjs";

const here = new URL(".", import.meta.url).pathname;
const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;
const SHOTS = `${here}screenshots`;

let work, sink, keycloak, rt, browser;
const pages = [];

before(async () => {
  work = workDir();
  sink = await startSmtpSink(work);
  keycloak = await startKeycloak();
  const secretFile = join(work, "oidc-secret");
  writeFileSync(secretFile, `${keycloak.secret}\n`);
  rt = await startRoundtable({
    work,
    examples: EXAMPLES,
    smtpUrl: sink.url,
    extraArgs: ["--oidc-issuer", keycloak.issuer, "--oidc-client-id", "roundtable", "--oidc-client-secret-file", secretFile, "--oidc-name", "Keycloak", "--operator-contact", "support@example.com"],
  });
  browser = await launchBrowser();
});

after(async () => {
  for (const p of pages) assert.deepEqual(p.errors, [], `uncaught errors on ${p.who}'s pages`);
  await browser?.close();
  await rt?.stop();
  await keycloak?.stop();
  sink?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function open(who) {
  const page = await person(browser, who);
  pages.push(page);
  return page;
}

const url = (path) => `${rt.url}${path}`;

// A 600×200 picture drawn in the page: red, green and blue thirds.
async function widePicture(page) {
  const dataUrl = await page.evaluate(() => {
    const c = document.createElement("canvas");
    c.width = 600;
    c.height = 200;
    const g = c.getContext("2d");
    ["#ff0000", "#00ff00", "#0000ff"].forEach((colour, i) => {
      g.fillStyle = colour;
      g.fillRect(i * 200, 0, 200, 200);
    });
    return c.toDataURL("image/png");
  });
  return Buffer.from(dataUrl.split(",")[1], "base64");
}

test("a host signs up with Keycloak, onboards, uploads an avatar, creates a room, and a guest sees the host's label", async () => {
  const ada = await open("ada");
  await ada.goto(url("/"));
  await ada.click("#oidc-signin");
  // Keycloak's own login page.
  await ada.waitForURL((u) => u.href.startsWith(keycloak.issuer));
  await ada.fill("#username", "ada");
  await ada.fill("#password", "ada-password");
  await ada.click("#kc-login");

  // Onboarding, once: the URL is checked as it is typed.
  await ada.waitForURL(/\/welcome/);
  await ada.locator("#onboarding").waitFor();
  assert.equal(await ada.inputValue("#display-name"), "Ada Lovelace", "the provider's name");
  await ada.selectOption("#use-case", "meetings");
  await ada.fill("#slug", "signin");
  await until("the reserved word refused", async () => /reserved/.test(await ada.locator("#slug-verdict").textContent()));
  assert.equal(await ada.locator("#onboard").isDisabled(), true);
  await ada.fill("#slug", "Ada_L");
  await until("the bad characters refused", async () => /letters a–z, digits and '-'/.test(await ada.locator("#slug-verdict").textContent()));
  await ada.fill("#slug", "ada");
  await until("the URL free", async () => /is yours to take/.test(await ada.locator("#slug-verdict").textContent()));
  assert.match(await ada.locator("#slug-forever").textContent(), /can never be changed/);
  await shot(ada, SHOTS, "onboarding");
  await ada.click("#onboard");

  // The dashboard: the rooms the examples declare for ada, read-only.
  await ada.waitForURL(url("/ada"));
  const coffee = ada.locator('.room-row[data-room="coffee"]');
  await coffee.waitFor();
  assert.match(await coffee.textContent(), /read-only/);

  // Settings: a wide picture comes back as its centred square.
  await ada.goto(url("/settings"));
  await ada.locator("#profile").waitFor();
  assert.match(await ada.locator("#email-fixed").textContent(), /cannot be changed.*support@example\.com/);
  await ada.setInputFiles("#avatar", { name: "wide.png", mimeType: "image/png", buffer: await widePicture(ada) });
  await until("the avatar saved", async () => /picture was saved/.test(await ada.locator("#notice").textContent()));
  const avatar = ada.locator("#label-preview img.avatar");
  await avatar.waitFor();
  const kept = await avatar.evaluate(async (img) => {
    await img.decode();
    const c = document.createElement("canvas");
    c.width = img.naturalWidth;
    c.height = img.naturalHeight;
    const g = c.getContext("2d");
    g.drawImage(img, 0, 0);
    return { w: img.naturalWidth, h: img.naturalHeight, centre: [...g.getImageData(100, 100, 1, 1).data], corner: [...g.getImageData(2, 2, 1, 1).data] };
  });
  assert.deepEqual([kept.w, kept.h], [200, 200], "cropped to the centred square");
  assert.deepEqual(kept.centre.slice(0, 3), [0, 255, 0], "the middle third");
  assert.deepEqual(kept.corner.slice(0, 3), [0, 255, 0], "nothing of the red third");
  await ada.fill("#headline", "Analyst");
  await ada.fill("#label-color", "#6a1b9a");
  await ada.click("#save-profile");
  await until("the profile saved", async () => /profile was saved/.test(await ada.locator("#notice").textContent()));
  await shot(ada, SHOTS, "settings");

  // A room from the dashboard.
  await ada.goto(url("/ada"));
  await ada.locator("#new-room").waitFor();
  await ada.fill("#room-slug", "office");
  await ada.fill("#room-title", "Office hours");
  await ada.click('#new-room button[type="submit"]');
  const office = ada.locator('.room-row[data-room="office"]');
  await office.waitFor();
  assert.match(await office.textContent(), /Office hours/);
  assert.match(await office.textContent(), /Edit/);
  assert.equal(await ada.inputValue("#room-slug"), "", "the create form is empty again after a room is made");
  assert.equal(await ada.inputValue("#room-title"), "");
  await ada.evaluate(() => window.scrollTo(0, 0));
  await shot(ada, SHOTS, "dashboard");
  const desktop = ada.viewportSize();
  await ada.setViewportSize({ width: 390, height: 844 });
  await shot(ada, SHOTS, "phone-dashboard");
  await ada.setViewportSize(desktop);

  // The host joins with her profile's label; a guest joins and sees it on her tile.
  await ada.click('.room-row[data-room="office"] a.room-link');
  await ada.locator("#label-name").waitFor();
  assert.equal(await ada.inputValue("#label-name"), "Ada Lovelace");
  assert.equal(await ada.inputValue("#label-headline"), "Analyst");
  await ada.click("#join");
  await ada.locator(".room-layout").waitFor({ timeout: 60_000 });

  const guest = await open("guest");
  await guest.goto(url("/ada/office"));
  await guest.fill("#label-name", "Grace Guest");
  await guest.click("#join");
  await guest.locator(".room-layout").waitFor({ timeout: 60_000 });
  await seesVideoOf(guest, "Ada Lovelace", 60_000);
  const label = guest.locator("figure.tile .label", { hasText: "Ada Lovelace" }).first();
  assert.match(await label.textContent(), /Analyst/);
  assert.match(await label.locator("img.avatar").getAttribute("src"), /^\/avatars\/ada\.png\?v=1$/);
  assert.match(await label.getAttribute("style"), /rgb\(106, 27, 154\)/);
  await shot(guest, SHOTS, "room-host-label");

  // The dashboard shows the room live, with its counts.
  const board = await tab(ada.context(), "ada's dashboard");
  pages.push(board);
  await board.goto(url("/ada"));
  const live = board.locator('.room-row[data-room="office"] .counts');
  await until("the room live with two on camera on the dashboard", async () => /Live · \d+ watching · 2 on camera/.test(await live.textContent()), 30_000);
  await guest.context().close();
  await ada.context().close();
});
