// Browser end-to-end tests of the web client in local mode (`roundtable up` on a temp copy of
// examples/), with real emails through an SMTP server on loopback and Debian's Chromium with
// its fake camera. Each scenario is what people do on the pages; assertions are what they
// would see (decoded video frames, counts, messages, refusals).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { rmSync } from "node:fs";
import { launchBrowser, person, seesVideoOf, shot, startRoundtable, startSmtpSink, tab, until, workDir } from "./harness.mjs";

const here = new URL(".", import.meta.url).pathname;
const EXAMPLES = new URL("../../examples/", import.meta.url).pathname;
const SHOTS = `${here}screenshots`;
const SIGN_IN_LINK = /https?:\/\/[^\s]+\/signin\?code=[A-Za-z0-9_-]+/;
const ACCESS_LINK = /https?:\/\/[^\s]+\?access=[A-Za-z0-9_-]+/;

let work, sink, rt, browser;
const pages = [];
// Ada (organiser, moderator, room host) and Bob (general ticket) sign in once: the API sends
// at most 5 emails to one address in 15 minutes.
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
  await noticeText(page, /open the link we sent to .* to confirm your registration/);
  await page.goto(await sink.link(email, SIGN_IN_LINK));
  // The registration's link confirms it, signs in and lands on the event.
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

const button = (page, name) => page.getByRole("button", { name, exact: true });

test("a sign-in link works once; used again, the page says so", async () => {
  const stranger = await open("stranger");
  await stranger.goto(await sink.link("ada@example.com", SIGN_IN_LINK));
  await noticeText(stranger, /expired or was already used/);
  assert.match(await stranger.locator("#who").textContent(), /Sign in/);
  await stranger.context().close();
});

test("a next link to another site keeps a signed-in person here, from the page and from an emailed link", async () => {
  const ada = await openTab(adaContext, "ada");
  const elsewhere = [];
  await ada.context().route((u) => u.hostname === "evil.example", (route) => {
    elsewhere.push(route.request().url());
    return route.fulfill({ status: 200, contentType: "text/html", body: "<p>another site</p>" });
  });
  const here = new URL(rt.url).origin;
  // Each of these passes a check that only looks for a leading "/" and no "//".
  for (const next of ["/\\evil.example/", "/\t/evil.example/", "/\n/evil.example/"]) {
    await ada.goto(url(`/?next=${encodeURIComponent(next)}`));
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(new URL(ada.url()).origin, here, `next=${JSON.stringify(next)} left the site`);
    assert.match(await ada.locator("#who").textContent(), /Sign out/);
  }
  // A path of this site is followed.
  await ada.goto(url(`/?next=${encodeURIComponent("/e/default/gala")}`));
  await ada.waitForURL(/\/e\/default\/gala$/);

  // Server side: a sign-in link asked for with such a `next` lands on the start page.
  const asked = await ada.request.post(url("/api/signin"), { data: { email: "redirect@example.com", next: "/\t/evil.example/" } });
  assert.equal(asked.status(), 202);
  const stranger = await open("stranger");
  await stranger.context().route((u) => u.hostname === "evil.example", (route) => {
    elsewhere.push(route.request().url());
    return route.fulfill({ status: 200, contentType: "text/html", body: "<p>another site</p>" });
  });
  const response = await stranger.goto(await sink.link("redirect@example.com", SIGN_IN_LINK));
  assert.equal(new URL(stranger.url()).origin, here);
  assert.equal(new URL(stranger.url()).pathname, "/");
  await until("signed in", async () => (await stranger.locator("#who").textContent()).includes("Sign out"));
  // The page is served with the headers that keep it from being framed or sniffed.
  const headers = response.headers();
  assert.match(headers["content-security-policy"], /frame-ancestors 'none'/);
  assert.match(headers["content-security-policy"], /script-src 'self'/);
  assert.equal(headers["x-content-type-options"], "nosniff");
  assert.equal(headers["referrer-policy"], "no-referrer");
  assert.deepEqual(elsewhere, [], "no request reached another site");
  await stranger.context().close();
  await ada.close();
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
  // The session records whoever is on camera, and says so to everyone on the page.
  assert.match(await bob.locator("#recording-indicator").textContent(), /Recorded while people are on camera/);
  // The moderator on camera finds herself in her own "On camera" list.
  const onCameraList = ada.locator('#moderation section[aria-label="On camera"]');
  await until("ada in her own on-camera list", async () => /you/.test(await onCameraList.textContent()));
  assert.equal(await onCameraList.getByText("Nobody is on camera.").isVisible(), false, "the list does not say nobody");
  assert.equal(await onCameraList.getByRole("button", { name: "Remove" }).count(), 0, "no Remove button for herself");
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
  await gus.locator("#refused").waitFor();
  assert.equal(await gus.locator("#refused h2").textContent(), "We could not find this");
  assert.match(await gus.locator("#refused").textContent(), /no such session/i);
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
  // Greyed out ("Connecting to the room…") only until the room's welcome.
  await until("vera's request button enabled", () => ask.isEnabled());
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
  // Her own locked room: she joins, she does not ask herself.
  assert.equal(await ada.locator("#join").textContent(), "Join");
  await ada.click("#join");
  await ada.locator(".room-layout").waitFor({ timeout: 30_000 });

  const gary = await open("gary");
  await gary.goto(url("/ada/board"));
  // A wrong passcode is refused at the passcode step, before any name label.
  await gary.fill("#passcode", "000000");
  await gary.click("#passcode-form button[type=submit]");
  await noticeText(gary, /passcode is not right/);
  assert.equal(await gary.locator("#label-form").count(), 0, "still at the passcode step");
  await gary.fill("#passcode", "482915");
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
  await gary.locator("#device-check video").waitFor();
  await shot(gary, SHOTS, "room-join");
  assert.equal(await gary.locator("#join").textContent(), "Ask to join");
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

test("the open example room: the first link printed, a guest gives a name and is on camera", async () => {
  const banner = rt.terminal().filter((l) => /^\s+room\s/.test(l));
  assert.match(banner[0], /^  room   Coffee chat \(open, anyone with the link joins\): http:\S+\/ada\/coffee$/);
  for (const line of banner) assert.match(line, /^  room   .+ \(.+\): http:\/\/\S+$/, "each room says what it is");
  const olive = await open("olive");
  await olive.goto(banner[0].split(": ").pop());
  await olive.fill("#label-name", "Olive Open");
  assert.equal(await olive.locator("#join").textContent(), "Join");
  await olive.click("#join");
  await olive.locator(".room-layout").waitFor({ timeout: 30_000 });
  await until("olive on camera", async () => (await olive.locator(".share-status").textContent()).includes("You are on camera"));
  await olive.context().close();
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

  // The stage is scheduled for December. Bob, early, is told so and his page waits.
  await bob.goto(url("/e/default/gala"));
  await bob.locator('[data-stage="gala-main-stage"]').waitFor();
  assert.equal(await bob.locator("[data-backstage]").count(), 0, "attendees get no backstage link");
  await bob.goto(url("/stage/default/gala-main-stage"));
  await bob.locator("#not-live").waitFor();
  assert.match(await bob.locator("#not-live").textContent(), /Scheduled for/);
  assert.equal(await button(bob, "Start the stage").count(), 0, "only organisers start it");
  await noticeText(bob, /has not started yet/);
  await shot(bob, SHOTS, "stage-waiting");

  // The organiser finds the private backstage link on her event page and starts the stage
  // from the backstage.
  await ada.goto(url("/e/default/gala"));
  const fromEvent = await ada.locator('[data-backstage="gala-main-stage"]').getAttribute("href");
  assert.match(fromEvent, /^\/backstage\/default\/gala-main-stage\?key=/);
  await ada.click('[data-backstage="gala-main-stage"]');
  await ada.waitForURL(/\/backstage\/default\/gala-main-stage\?key=/);
  await button(ada, "Start the stage").click();
  await button(ada, "Share audio and video").waitFor({ timeout: 30_000 });
  await button(ada, "Share audio and video").click();
  await until("ada on camera backstage", async () => (await ada.locator(".share-status").textContent()).includes("You are on camera"));

  // Bob's waiting page joined the stage by itself; the audience sees nothing from the
  // backstage until Broadcast.
  await bob.locator("#live-indicator").waitFor({ timeout: 30_000 });
  assert.equal(await bob.locator("#live-indicator").textContent(), "Off air");
  const stageTab = await openTab(adaContext, "ada");
  await stageTab.goto(url("/stage/default/gala-main-stage"));
  assert.equal(await stageTab.locator("#backstage-link").getAttribute("href"), fromEvent, "the stage page has the same link");
  await stageTab.close();
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(await bob.evaluate(() => window.roundtable.live.framesDecoded()), 0, "no frames before Broadcast");
  // ...not even how many rehearse: Ada is on camera backstage, the stage counts nobody.
  assert.equal(await bob.locator(".counts [data-count=on-camera]").textContent(), "0", "off air, nobody on camera");

  await button(ada, "Broadcast").click();
  const pressed = Date.now();
  await bob.locator("#live-indicator.on").waitFor();
  await until("the stage counts Ada once on air", async () => (await bob.locator(".counts [data-count=on-camera]").textContent()) === "1");
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
  await until("ask greyed out, saying why", async () =>
    !(await ask.isEnabled()) && /2 of 2 on camera/.test(await third.locator(".share-status").textContent()));
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

test("a refused page says why and where to go, every page's icon is served, and a phone shows the whole title", async () => {
  // Someone without a ticket opens a session link.
  const stranger = await open("stranger");
  const missing = [];
  stranger.on("response", (r) => r.status() === 404 && missing.push(r.url()));
  const icon = stranger.waitForResponse((r) => r.url().endsWith("/assets/favicon.svg"));
  await stranger.goto(url("/s/default/gala-ask-the-founders"));
  const card = stranger.locator("#refused");
  await card.waitFor();
  assert.equal(await card.locator("h2").textContent(), "Sign in to continue");
  assert.match(await card.textContent(), /sign in or register with the email address you used/i);
  assert.equal(await card.getByRole("link", { name: "Sign in or register" }).getAttribute("href"), "/?next=%2Fs%2Fdefault%2Fgala-ask-the-founders");
  assert.equal(await card.getByRole("link", { name: "Go to the start page" }).getAttribute("href"), "/");
  assert.equal((await icon).status(), 200);
  await shot(stranger, SHOTS, "refused");
  assert.deepEqual(missing, [], "no request of the page answers 404");
  await stranger.context().close();

  // Bob on a phone: the event's title is on a line of its own, whole.
  const phone = await openTab(bobContext, "bob");
  await phone.setViewportSize({ width: 375, height: 740 });
  await phone.goto(url("/e/default/gala"));
  await until("the event title", async () => (await phone.locator("#title").textContent()) === "Winter Gala 2026");
  const title = await phone.locator("#title").evaluate((el) => ({ width: el.clientWidth, needed: el.scrollWidth }));
  assert.ok(title.needed <= title.width, `the title fits: ${JSON.stringify(title)}`);
  assert.ok(title.width > 250, `the title has the width of the screen: ${JSON.stringify(title)}`);
  await shot(phone, SHOTS, "phone-event");
  await phone.close();
});

// Last: after every scenario above (a dozen joins), the terminal of `roundtable up`, at its
// default log levels, is still for a person: no str0m payload-type notes burying the links.
test("the terminal of roundtable up stays readable at its default log levels", async () => {
  const lines = rt.terminal();
  const warnings = lines.filter((l) => /\bWARN\b/.test(l));
  const payloadNotes = lines.filter((l) => /Ignore remote PT/.test(l));
  console.log(`roundtable up printed ${lines.length} lines, ${warnings.length} warnings, ${payloadNotes.length} str0m payload-type notes`);
  assert.deepEqual(payloadNotes, [], "str0m's payload-type notes are not shown by default");
  assert.ok(lines.some((l) => /Roundtable is running at/.test(l)), "the banner is there");
});
