// Browser end-to-end tests of the web client in local mode (`roundtable up` on a temp copy of
// examples/), with real emails through an SMTP server on loopback and Debian's Chromium with
// its fake camera. Each scenario is what people do on the pages; assertions are what they
// would see (decoded video frames, counts, messages, refusals).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { launchBrowser, person, shot, startRoundtable, startSmtpSink, tab, until, workDir } from "./harness.mjs";

const here = new URL(".", import.meta.url).pathname;
const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;
const SHOTS = `${here}screenshots`;
const SIGN_IN_LINK = /https?:\/\/[^\s]+\/signin\?code=[A-Za-z0-9_-]+/;
const ACCESS_LINK = /https?:\/\/[^\s]+\?access=[A-Za-z0-9_-]+/;

let work, sink, rt, browser;
const pages = [];
// Ada (organiser, moderator, room host) and Bob (general ticket) sign in once: the API sends
// at most 5 emails per client address in 15 minutes, and every browser here is 127.0.0.1.
// The run sends exactly 5: Ada, Bob, Vera, Erin's access link, Grace.
let adaContext, bobContext, veraContext;

before(async () => {
  work = workDir();
  sink = await startSmtpSink(work);
  rt = await startRoundtable({ work, examples: EXAMPLES, smtpUrl: sink.url });
  browser = await launchBrowser();
  const ada = await open("ada");
  const bob = await open("bob");
  adaContext = ada.context();
  bobContext = bob.context();
  await signIn(ada, "ada@example.com");
  await register(bob, "Bob Builder", "bob@example.com", "general");
  await ada.close();
  await bob.close();
});

after(async () => {
  for (const p of pages) assert.deepEqual(p.errors, [], `uncaught errors on ${p.who}'s pages`);
  await browser?.close();
  await rt?.stop();
  sink?.stop();
  if (work) rmSync(work, { recursive: true, force: true });
});

async function open(who, opts) {
  const page = await person(browser, who, opts);
  pages.push(page);
  return page;
}

async function openTab(context, who) {
  const page = await tab(context, who);
  pages.push(page);
  return page;
}

const url = (path) => `${rt.url}${path}`;

async function noticeText(page, pattern) {
  await until(`notice ${pattern} on ${page.who}'s page`, async () => {
    const box = page.locator("#notice");
    return (await box.isVisible()) && pattern.test(await box.textContent());
  });
  return page.locator("#notice").textContent();
}

async function signIn(page, email) {
  await page.goto(url("/"));
  await page.fill("#signin-email", email);
  await page.click("#signin button[type=submit]");
  await noticeText(page, /We sent a sign-in link/);
  await page.goto(await sink.link(email, SIGN_IN_LINK));
  await until(`${email} signed in`, async () => (await page.locator("#who").textContent()).includes("Sign out"));
}

async function register(page, name, email, ticket) {
  await page.goto(url("/?event=default/gala"));
  await page.fill("#reg-name", name);
  await page.fill("#reg-email", email);
  // The event's ticket types, read from the API before signing in, as a select.
  const field = page.locator("select#reg-ticket");
  await field.waitFor();
  assert.deepEqual(await field.locator("option").allTextContents(), ["General admission", "VIP pass"]);
  await field.selectOption(ticket);
  await page.click("#register button[type=submit]");
  await noticeText(page, /You are registered/);
  await page.goto(await sink.link(email, SIGN_IN_LINK));
  // The registration's link signs in and lands on the event.
  await page.waitForURL(/\/e\/default\/gala$/);
}

const counts = async (page) => ({
  watching: Number(await page.locator(".counts [data-count=watching]").textContent()),
  onCamera: Number(await page.locator(".counts [data-count=on-camera]").textContent()),
});

async function countsAre(page, watching, onCamera) {
  await until(`${page.who} sees ${watching} watching, ${onCamera} on camera`, async () => {
    const c = await counts(page);
    return c.watching === watching && c.onCamera === onCamera ? c : false;
  });
}

// Video frames decoded so far in the tile of the person named `name`.
const framesOf = (page, name) =>
  page.evaluate(async (name) => {
    const tile = [...document.querySelectorAll("figure.tile[data-mid]")].find(
      (t) => t.querySelector(".label-name")?.textContent === name,
    );
    const pc = window.roundtable?.live?.viewPc;
    if (!tile || !pc) return 0;
    let frames = 0;
    (await pc.getStats()).forEach((s) => {
      if (s.type === "inbound-rtp" && s.kind === "video" && s.mid === tile.dataset.mid) frames += s.framesDecoded || 0;
    });
    return frames;
  }, name);

// More than zero decoded frames of `name`'s camera, and still rising a second later.
async function seesVideoOf(page, name) {
  const first = await until(`${page.who} decodes ${name}'s video`, async () => {
    const n = await framesOf(page, name);
    return n > 0 ? n : false;
  });
  await new Promise((r) => setTimeout(r, 1200));
  const later = await framesOf(page, name);
  assert.ok(later > first, `${page.who}: frames of ${name} should rise (${first} then ${later})`);
}

const button = (page, name) => page.getByRole("button", { name, exact: true });

test("a sign-in link works once; used again, the page says so", async () => {
  const stranger = await open("stranger");
  await stranger.goto(await sink.link("ada@example.com", SIGN_IN_LINK));
  await noticeText(stranger, /expired or was already used/);
  assert.match(await stranger.locator("#who").textContent(), /Sign in/);
  await stranger.context().close();
});

test("two people in a moderated session: request, approve, on camera, counts, chat", async () => {
  const ada = await openTab(adaContext, "ada"); // organiser and moderator of the session
  const bob = await openTab(bobContext, "bob");

  // Bob's event page lists the sessions he may see, with their counts.
  await bob.goto(url("/e/default/gala"));
  const card = bob.locator('[data-session="gala-ask-the-founders"]');
  await card.waitFor();
  assert.match(await card.textContent(), /0 on camera/);

  // The session is scheduled for later: the organiser starts it from the session page.
  await ada.goto(url("/s/default/gala-ask-the-founders"));
  await button(ada, "Start the session").click();
  await button(ada, "Share audio and video").click();
  await until("ada on camera", async () => (await ada.locator(".share-status").textContent()).includes("You are on camera"));

  // Bob opens the session link: he watches first and sees Ada.
  const opened = Date.now();
  await bob.goto(url("/s/default/gala-ask-the-founders"));
  const firstFrameMs = await until("bob's first remote frame", () => bob.evaluate(() => window.roundtable?.firstFrameMs));
  const observedMs = Date.now() - opened;
  console.log(`session link -> first remote video frame: ${Math.round(firstFrameMs)} ms after navigation start (test clock: ${observedMs} ms)`);
  await seesVideoOf(bob, "ada"); // signed in by email: her name is the address's local part
  await countsAre(bob, 1, 1);
  await countsAre(ada, 1, 1);
  await shot(bob, SHOTS, "session-watching");

  // Moderated: Bob asks; the request shows in Ada's moderation panel with his profile.
  await button(bob, "Request to share audio and video").click();
  const request = ada.locator("#moderation li[data-participant]", { hasText: "Bob Builder" });
  await request.waitFor();
  await shot(ada, SHOTS, "moderation");
  await request.getByRole("button", { name: "Approve" }).click();

  // One click: Bob is on camera, Ada decodes his video, both see the counts change.
  await seesVideoOf(ada, "Bob Builder");
  await countsAre(ada, 0, 2);
  await countsAre(bob, 0, 2);

  // The event page follows: its card of the session shows two on camera.
  const eventTab = await openTab(bobContext, "bob");
  await eventTab.goto(url("/e/default/gala"));
  await until("the event page shows 2 on camera", async () =>
    /2 on camera/.test(await eventTab.locator('[data-session="gala-ask-the-founders"]').textContent()));
  await shot(eventTab, SHOTS, "event");
  await eventTab.close();

  // The organiser's event report: the session's peak of two on camera, two people joined.
  const report = await openTab(adaContext, "ada");
  await report.goto(url("/report/default/gala"));
  const row = report.locator("#attendance tr", { hasText: "Ask the founders" });
  await row.waitFor();
  assert.equal(await row.locator("td").nth(2).textContent(), "2", "peak on camera");
  // Joiners reach the report from the room's stats on the runner's next look: reload until then.
  await until("two unique joiners", async () => {
    if ((await row.locator("td").nth(3).textContent()) === "2") return true;
    await report.reload();
    await row.waitFor();
    return false;
  });
  await shot(report, SHOTS, "report");
  await report.close();

  // Session chat reaches the other; the event-wide chat sits beside it.
  await bob.fill("#room-chat input", "Hello from Bob");
  await bob.click("#room-chat button[type=submit]");
  await ada.locator("#room-chat .text", { hasText: "Hello from Bob" }).waitFor();
  await ada.fill("#event-chat input", "Welcome to the gala, everyone");
  await ada.click("#event-chat button[type=submit]");
  await bob.locator("#event-chat .text", { hasText: "Welcome to the gala, everyone" }).waitFor();
  await shot(bob, SHOTS, "session");

  // One click removes him from camera; he keeps watching.
  await ada.locator("#moderation li[data-participant]", { hasText: "Bob Builder" }).getByRole("button", { name: "Remove" }).click();
  await noticeText(bob, /took you off camera/);
  await countsAre(bob, 1, 1);
  await ada.close();
  await bob.close();
});

test("a VIP session is listed and joinable for a VIP ticket only", async () => {
  const vera = await open("vera");
  veraContext = vera.context();
  await register(vera, "Vera Vip", "vera@example.com", "vip");
  await vera.locator('[data-session="gala-vip-lounge"]').waitFor();

  // Bob has a general ticket.
  const gus = await openTab(bobContext, "bob");
  await gus.goto(url("/e/default/gala"));
  await gus.locator('[data-session="gala-ask-the-founders"]').waitFor();
  assert.equal(await gus.locator('[data-session="gala-vip-lounge"]').count(), 0, "the VIP lounge is not listed");
  await gus.goto(url("/s/default/gala-vip-lounge"));
  await noticeText(gus, /no such session/i);
  assert.equal(await gus.locator(".wall").count(), 0, "no room shown");
  await vera.close();
  await gus.close();
});

test("an attendee creates a moderated session, moderates it; others must ask, and not once it is full", async () => {
  const bob = await openTab(bobContext, "bob");
  await bob.goto(url("/e/default/gala"));
  await bob.fill("#create-session input[name=title]", "Bob's corner");
  await bob.selectOption("#create-session select[name=sharePolicy]", "Moderated");
  await bob.fill("#create-session input[name=maxParticipants]", "1");
  await bob.click("#create-session button[type=submit]");
  await bob.waitForURL(/\/s\/default\/bob-s-corner-/);
  // It starts at once; its creator moderates it.
  await bob.locator("#moderation").waitFor({ timeout: 30_000 });
  await button(bob, "Share audio and video").waitFor();

  const vera = await openTab(veraContext, "vera");
  await vera.goto(url("/e/default/gala"));
  await vera.locator(".session-card", { hasText: "Bob's corner" }).click();
  const ask = button(vera, "Request to share audio and video");
  await ask.waitFor();
  assert.equal(await ask.isEnabled(), true);
  assert.equal(await vera.locator("#moderation").count(), 0, "no moderation panel for her");

  // One on camera at most: when Bob shares, Vera's request is greyed out with the reason.
  await button(bob, "Share audio and video").click();
  await until("vera's request greyed out", async () => !(await ask.isEnabled()));
  assert.match(await vera.locator(".share-status").textContent(), /1 of 1 on camera/);
  await bob.close();
  await vera.close();
});

test("a locked room with a passcode: wrong passcode refused, ask to join, a host lets the guest in", async () => {
  const ada = await openTab(adaContext, "ada");
  await ada.goto(url("/ada/board"));
  // Hosts skip the passcode; the label is prefilled from her account.
  await ada.locator("#label-name").waitFor();
  await ada.fill("#label-name", "Ada Lovelace");
  await ada.fill("#label-headline", "Chair");
  await ada.click("#join");
  await ada.locator(".room-layout").waitFor({ timeout: 30_000 });

  const gary = await open("gary");
  await gary.goto(url("/ada/board"));
  await gary.fill("#passcode", "000000");
  await gary.click("#passcode-form button[type=submit]");
  await gary.fill("#label-name", "Gary Guest");
  await gary.fill("#label-headline", "Visiting board member");
  // His picture (a 4×2 red PNG), cropped to a square for the label.
  await gary.setInputFiles("#label-image", {
    name: "gary.png",
    mimeType: "image/png",
    buffer: Buffer.from(
      "iVBORw0KGgoAAAANSUhEUgAAAAQAAAACCAYAAAB/qH1jAAAAEklEQVR4nGM4oaHxHxkzoAsAABnVELn9L8w3AAAAAElFTkSuQmCC",
      "base64",
    ),
  });
  await gary.locator(".label-preview img.avatar").waitFor();
  await gary.click('button[aria-label="Colour #6a1b9a"]');
  await gary.click("#join");
  await noticeText(gary, /passcode is not right/);
  await gary.fill("#passcode", "482915");
  await gary.click("#passcode-form button[type=submit]");
  await gary.locator("#device-check video").waitFor();
  await shot(gary, SHOTS, "room-join");
  await gary.click("#join");
  await gary.locator("#lobby").waitFor();
  assert.match(await gary.locator("#lobby").textContent(), /A host will let you in/);

  const asking = ada.locator("#join-requests li[data-participant]", { hasText: "Gary Guest" });
  await asking.waitFor();
  // The host sees who asks: name, headline and picture.
  assert.match(await asking.textContent(), /Visiting board member/);
  assert.match(await asking.locator("img.avatar").getAttribute("src"), /^data:image\/jpeg;base64,/);
  await asking.getByRole("button", { name: "Let in" }).click();
  await gary.locator(".room-layout").waitFor();
  await seesVideoOf(gary, "Ada Lovelace");
  await seesVideoOf(ada, "Gary Guest");
  await shot(gary, SHOTS, "room");
  await ada.close();
  await gary.context().close();

  // Signed in, her next join starts from the label she used.
  const again = await openTab(adaContext, "ada");
  await again.goto(url("/ada/board"));
  await again.locator("#label-name").waitFor();
  assert.equal(await again.inputValue("#label-name"), "Ada Lovelace");
  assert.equal(await again.inputValue("#label-headline"), "Chair");
  await again.close();
});

test("an email-domain room: another domain is refused, the emailed link lets you in once", async () => {
  const erin = await open("erin");
  await erin.goto(url("/linus/team-sync"));
  await erin.fill("#access-email", "eve@elsewhere.test");
  await erin.click("#access-form button[type=submit]");
  const refusal = await noticeText(erin, /./);
  assert.doesNotMatch(refusal, /HTTP \d+/, "the API's own sentence is shown");
  await erin.fill("#access-email", "erin@example.org");
  await erin.click("#access-form button[type=submit]");
  await erin.locator("#link-sent").waitFor();
  const link = await sink.link("erin@example.org", ACCESS_LINK);
  assert.ok(link.startsWith(rt.url), `the link points at this server: ${link}`);

  await erin.goto(link);
  await erin.fill("#label-name", "Erin Example");
  await erin.click("#join");
  await erin.locator(".room-layout").waitFor({ timeout: 30_000 });
  await until("erin on camera", async () => (await erin.locator(".share-status").textContent()).includes("You are on camera"));

  // The link works once.
  const again = await open("erin-again");
  await again.goto(link);
  await again.fill("#label-name", "Erin Again");
  await again.click("#join");
  await noticeText(again, /link/i);
  assert.equal(await again.locator(".room-layout").count(), 0);
  await erin.context().close();
  await again.context().close();
});

test("a webinar room: the host presents; an attendee gives only a display name and is never asked for a camera", async () => {
  // The host checks her camera and presents.
  const grace = await open("grace");
  await signIn(grace, "grace@example.com");
  await grace.goto(url("/grace/product-webinar"));
  await grace.locator("#device-check video").waitFor();
  await grace.fill("#label-name", "Grace Hopper");
  await grace.click("#join");
  await until("grace presenting", async () => (await grace.locator(".share-status").textContent()).includes("You are on camera"), 30_000);

  // Count every getUserMedia call the page makes.
  const wendy = await open("wendy", {
    init: () => {
      window.__getUserMediaCalls = 0;
      const md = navigator.mediaDevices;
      const original = md.getUserMedia.bind(md);
      md.getUserMedia = (...args) => {
        window.__getUserMediaCalls += 1;
        return original(...args);
      };
    },
  });
  await wendy.goto(url("/grace/product-webinar"));
  await wendy.locator("#label-name").waitFor();
  assert.equal(await wendy.locator("#label-headline").count(), 0, "only a display name");
  assert.equal(await wendy.locator("#device-check").count(), 0, "no device check");
  await wendy.fill("#label-name", "Wendy Watcher");
  await wendy.click("#join");
  await wendy.locator(".room-layout").waitFor({ timeout: 30_000 });
  await seesVideoOf(wendy, "Grace Hopper");
  assert.equal(await button(wendy, "Share audio and video").isVisible(), false, "attendees do not share");
  await countsAre(wendy, 1, 1);
  assert.equal(await wendy.evaluate(() => window.__getUserMediaCalls), 0, "getUserMedia was never called");
  await wendy.context().close();
  await grace.context().close();
});

test("backstage broadcast reaches a stage watcher, live indicator on and off", async () => {
  const ada = await openTab(adaContext, "ada");
  const bob = await openTab(bobContext, "bob");

  // The organiser finds the private backstage link on the stage page.
  await ada.goto(url("/stage/default/gala-main-stage"));
  await ada.click("#backstage-link");
  await ada.waitForURL(/\/backstage\/default\/gala-main-stage\?key=/);
  await button(ada, "Share audio and video").click();
  await until("ada on camera backstage", async () => (await ada.locator(".share-status").textContent()).includes("You are on camera"));

  // The audience sees nothing from the backstage until Broadcast.
  await bob.goto(url("/stage/default/gala-main-stage"));
  await bob.locator("#live-indicator").waitFor();
  assert.equal(await bob.locator("#live-indicator").textContent(), "Off air");
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await bob.evaluate(() => window.roundtable.live.framesDecoded()), 0, "no frames before Broadcast");

  await button(ada, "Broadcast").click();
  const pressed = Date.now();
  await bob.locator("#live-indicator.on").waitFor();
  const frames = await until("frames on stage", async () => bob.evaluate(async () => (await window.roundtable.live.framesDecoded()) || false));
  console.log(`Broadcast -> first frame decoded on the stage page: <= ${Date.now() - pressed} ms (polled; ${frames} frames)`);
  await new Promise((r) => setTimeout(r, 1200));
  assert.ok((await bob.evaluate(() => window.roundtable.live.framesDecoded())) > frames, "stage frames rise");

  // A registered speaker with the private link asks to share; the organiser accepts, and the
  // stage shows her too.
  const link = ada.url();
  const vera = await openTab(veraContext, "vera");
  await vera.goto(link);
  await button(vera, "Ask to share audio and video").click();
  const request = ada.locator("#moderation li[data-participant]", { hasText: "Vera Vip" });
  await request.waitFor();
  await request.getByRole("button", { name: "Approve" }).click();
  await seesVideoOf(bob, "Vera Vip");
  await until("2 of 2 speakers", async () => /2 of 2 speakers/.test(await ada.locator("#speakers").textContent()));

  // The backstage is full: a third speaker's "Ask to share" is greyed out with the reason.
  const third = await openTab(bobContext, "bob");
  await third.goto(link);
  const ask = button(third, "Ask to share audio and video");
  await ask.waitFor();
  await until("ask greyed out", async () => !(await ask.isEnabled()));
  assert.match(await third.locator(".share-status").textContent(), /2 of 2 on camera/);
  await third.close();
  // Fewer than 5 speakers on screen, so screen sharing is open: Ada shares hers; the stage shows it.
  assert.equal(await button(ada, "Share screen").isEnabled(), true);
  await button(ada, "Share screen").click();
  await seesVideoOf(bob, "ada's screen");

  await vera.fill("#room-chat input", "Ready when you are");
  await vera.click("#room-chat button[type=submit]");
  await ada.locator("#room-chat .text", { hasText: "Ready when you are" }).waitFor();
  await shot(ada, SHOTS, "backstage");
  await shot(bob, SHOTS, "stage");
  // The backstage chat stays in the backstage.
  assert.equal(await bob.locator("#room-chat .text", { hasText: "Ready when you are" }).count(), 0);

  await button(ada, "Stop sharing screen").click();
  await until("the screen tile leaves the stage", async () => (await bob.locator("figure.tile.screen").count()) === 0);
  await button(ada, "Stop broadcasting").click();
  await until("off air again", async () => (await bob.locator("#live-indicator").textContent()) === "Off air");
  await ada.close();
  await bob.close();
  await vera.close();
});
