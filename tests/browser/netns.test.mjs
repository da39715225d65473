// Real networks, not loopback: `roundtable up` serves HTTPS (a test CA that the attendee's
// Chromium trusts through its NSS database) in a "server" network namespace with coturn next
// to it; Chromium runs in an "attendee" namespace behind a NAT router (iptables MASQUERADE).
// The page talks only to the control plane's origin (signalling goes through its proxy); media
// goes directly over UDP, and, when the router drops all UDP, through TURN over TCP, or, with
// no TURN server in the join answer, over ICE-TCP straight to the SFU's media port. The stage
// is broadcast from the backstage and watched, both behind the NAT; and the server sits behind
// a 1:1 NAT of its own (a cloud VM), reached only at its public address. Prints join → first
// frame per path.
import { test, before, after, afterEach } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, person, seesVideoOf, startSmtpSink, until, workDir } from "./harness.mjs";
import { buildNetwork, chromiumBehindNat, missingCapability, startCoturn, testCa } from "./netns.mjs";

const missing = missingCapability();
if (missing) console.log(`# network scenarios skipped: ${missing}`);

const ROOM = `apiVersion: roundtable.dev/v1alpha1
kind: Room
metadata:
  name: qa-net
spec:
  host: qa
  slug: net
  title: Network check
  hosts: [qa@example.com]
`;

// An event on now with its stage live by schedule: an organiser broadcasts from the backstage,
// a registered attendee watches the stage, both behind the NAT.
function stageEvent() {
  const at = (minutes) => new Date(Date.now() + minutes * 60_000).toISOString().replace(/\.\d+Z$/, "Z");
  return `apiVersion: roundtable.dev/v1alpha1
kind: LiveEvent
metadata:
  name: netgala
spec:
  title: Network gala
  start: "${at(-60)}"
  end: "${at(120)}"
  ticketTypes:
    - name: general
      title: General admission
  organizers: [ada@example.com]
---
apiVersion: roundtable.dev/v1alpha1
kind: Stage
metadata:
  name: net-stage
spec:
  event: netgala
  title: Network keynote
  start: "${at(-10)}"
  end: "${at(60)}"
  broadcasting: false
  backstage:
    maxSpeakers: 2
    maxWatchers: 50
---
apiVersion: roundtable.dev/v1alpha1
kind: Session
metadata:
  name: net-talk
spec:
  event: netgala
  title: Relayed talk
  lifecycle: Started
  relays: 1
`;
}
const SIGN_IN_LINK = /https?:\/\/[^\s]+\/signin\?code=[A-Za-z0-9_-]+/;

let work, net, tls, rt, coturn, browser, sink;
const figures = [];
// What a failed scenario leaves to read: CI shows only the end of the output, so `after`
// prints it last. `rtLog`: the server's log lines since the scenario began; `pages`: the
// pages it opened.
const failures = [];
let rtLog = [];
let pages = [];

// `roundtable up` in the server namespace, with coturn's URLs in every join answer when `turn`.
// `publicIp`: the server is behind a 1:1 NAT; people open it at that address, and, when
// `advertise`, ICE candidates name it too (`--advertise-ip`).
async function startRoundtable({ turn, publicIp = false, advertise = publicIp }) {
  const manifests = join(work, "manifests");
  mkdirSync(manifests, { recursive: true });
  writeFileSync(join(manifests, "room.yaml"), ROOM);
  writeFileSync(join(manifests, "stage.yaml"), stageEvent());
  const origin = `https://${publicIp ? net.publicIp : net.serverIp}:8443`;
  const advertiseArgs = advertise ? ["--advertise-ip", net.publicIp] : [];
  const urls = turn === "tls"
    ? `turns:${net.serverIp}:443?transport=tcp`
    : `turn:${net.serverIp}:3478?transport=udp,turn:${net.serverIp}:3478?transport=tcp`;
  const turnArgs = turn
    ? [
        "--turn-urls", urls,
        "--turn-secret-file", join(work, "turn-secret"),
      ]
    : [];
  const child = spawn(
    "ip",
    [
      "netns", "exec", net.ns.server, process.env.ROUNDTABLE_BIN, "up", manifests,
      "--listen", `${net.serverIp}:8443`, "--media-ip", net.serverIp, "--public-url", origin,
      "--tls-cert", tls.cert, "--tls-key", tls.key,
      ...turnArgs,
      ...advertiseArgs,
      "--smtp-url", sink.url,
      "--database", join(work, "roundtable.db"), "--recordings-dir", join(work, "recordings"),
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } },
  );
  createInterface({ input: child.stderr }).on("line", (line) => {
    process.stderr.write(`${line}\n`);
    rtLog.push(line);
    if (rtLog.length > 200) rtLog.shift();
  });
  await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("roundtable up did not start in 60 s")), 60_000);
    child.once("exit", (code) => reject(new Error(`roundtable up exited (${code})`)));
    createInterface({ input: child.stdout }).on("line", (line) => {
      if (line.includes(`running at ${origin}`)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
  return { child, origin };
}

async function stopRoundtable() {
  if (!rt) return;
  const { child } = rt;
  rt = null;
  child.removeAllListeners("exit");
  child.kill("SIGTERM");
  await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
}

before(async () => {
  if (missing) return;
  work = workDir();
  net = buildNetwork();
  tls = testCa(join(work, "tls"), [net.serverIp, net.publicIp]);
  const secret = `turn-secret-${process.pid}-${Date.now()}`;
  writeFileSync(join(work, "turn-secret"), secret);
  coturn = startCoturn(work, net, secret, tls);
  // Sign-in and registration links go by real SMTP to a sink beside the server.
  sink = await startSmtpSink(work, { netns: net.ns.server });
  rt = await startRoundtable({ turn: true });
  browser = await chromium.launch({ executablePath: chromiumBehindNat(work, net, tls.ca), args: CHROMIUM_ARGS });
});

// A failed scenario: what each of its pages showed, and the server's and coturn's last words.
afterEach(async (t) => {
  if (!t.passed) {
    const lines = [`${t.name}:`];
    for (const page of pages) {
      const state = await page
        .evaluate(() => {
          const text = (sel) => document.querySelector(sel)?.textContent?.trim().slice(0, 120) ?? null;
          const live = window.roundtable?.live;
          const pc = (p) => (p ? `${p.connectionState}/${p.iceConnectionState}` : null);
          return {
            url: location.pathname,
            status: text(".share-status"),
            notice: text("#notice"),
            path: document.querySelector("[data-media-path]")?.dataset.mediaPath ?? null,
            publish: pc(live?.publishPc),
            view: pc(live?.viewPc),
          };
        })
        .catch((e) => ({ closed: e.message.split("\n")[0] }));
      lines.push(`  ${page.who}: ${JSON.stringify(state)}`);
      for (const e of page.trace.slice(-8)) lines.push(`    ${e}`);
    }
    for (const l of rtLog.slice(-25)) lines.push(`  server: ${l.slice(0, 300)}`);
    for (const l of (coturn?.log ?? []).join("").split("\n").filter((l) => /error|fail|refus/i.test(l)).slice(-5)) {
      lines.push(`  coturn: ${l.slice(0, 200)}`);
    }
    failures.push(...lines);
  }
  for (const page of pages) await page.context().close().catch(() => {});
  pages = [];
  rtLog = [];
});

after(async () => {
  for (const l of failures) console.log(`# ${l}`);
  await browser?.close();
  await stopRoundtable();
  coturn?.kill("SIGTERM");
  sink?.stop();
  net?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
  for (const f of figures) console.log(`# ${f}`);
});

// A person's page, closed when the scenario ends, whose console errors and warnings, failed
// requests and refused answers are kept (`page.trace`) for the report of a failed scenario.
async function pageOf(who) {
  const page = await person(browser, who);
  page.trace = [];
  const keep = (line) => {
    page.trace.push(line.slice(0, 200));
    if (page.trace.length > 50) page.trace.shift();
  };
  page.on("console", (m) => ["error", "warning"].includes(m.type()) && keep(`console ${m.type()}: ${m.text()}`));
  page.on("requestfailed", (r) => keep(`failed: ${r.method()} ${new URL(r.url()).pathname} ${r.failure()?.errorText}`));
  page.on("response", (r) => r.status() >= 400 && keep(`${r.status()}: ${r.request().method()} ${new URL(r.url()).pathname}`));
  pages.push(page);
  return page;
}

// A person's page that keeps what it talked to: every origin of its requests and WebSockets
// (`page.origins`) and the control plane's join answers (`page.joinAnswers`).
async function watchedPerson(who) {
  const page = await pageOf(who);
  page.origins = new Set();
  page.joinAnswers = [];
  page.on("request", (r) => page.origins.add(new URL(r.url()).origin));
  page.on("websocket", (ws) => page.origins.add(new URL(ws.url()).origin.replace(/^wss:/, "https:")));
  page.on("response", async (r) => {
    if (r.request().method() === "POST" && new URL(r.url()).pathname.endsWith("/join")) {
      page.joinAnswers.push(await r.json().catch(() => ({})));
    }
  });
  return page;
}

// Everything the page fetched or opened was on the control plane's one origin.
const talksOnlyToTheOrigin = (page) =>
  assert.deepEqual([...page.origins].filter((o) => o.startsWith("http")), [rt.origin], `${page.who} talks only to ${rt.origin}`);

// Joins the room on camera; resolves with the page and performance.now() at the Join click.
async function joinRoom(who) {
  const page = await watchedPerson(who);
  await page.goto(`${rt.origin}/qa/net`);
  assert.equal(await page.evaluate(() => window.isSecureContext), true, "the page is a secure context");
  await page.fill("#label-name", who);
  await page.locator("#device-check video").waitFor({ timeout: 30_000 });
  const clicked = await page.evaluate(() => performance.now());
  await page.click("#join");
  await page.locator(".room-layout").waitFor({ timeout: 60_000 });
  return { page, clicked };
}

const mediaPath = (page) =>
  until(`${page.who}'s page to say its media path`, async () => {
    const p = await page.locator("[data-media-path]").getAttribute("data-media-path");
    return p || false;
  }, 45_000);

// The address at the far end of the viewing connection's selected ICE candidate pair.
const remoteAddress = (page) =>
  page.evaluate(async () => {
    const stats = await window.roundtable.live.viewPc.getStats();
    let address = null;
    stats.forEach((s) => {
      if (s.type === "transport" && s.selectedCandidatePairId) {
        const pair = stats.get(s.selectedCandidatePairId);
        address = stats.get(pair?.remoteCandidateId)?.address ?? null;
      }
    });
    return address;
  });

async function scenario(label, expectPath, { turn = true, remote } = {}) {
  const pat = await joinRoom(`Pat ${label}`);
  const wes = await joinRoom(`Wes ${label}`);
  const turnUrls = wes.page.joinAnswers
    .flatMap((a) => a.iceServers || [])
    .flatMap((s) => [s.urls].flat())
    .filter((u) => /^turns?:/.test(u));
  assert.equal(turnUrls.length > 0, turn, `${label}: TURN servers in the join answer: ${turnUrls}`);
  await seesVideoOf(wes.page, `Pat ${label}`, 45_000);
  await seesVideoOf(pat.page, `Wes ${label}`, 45_000);
  const firstFrame = await wes.page.evaluate(() => window.roundtable.firstFrameMs);
  const path = await mediaPath(wes.page);
  assert.match(path, expectPath, `${label}: the page says which path`);
  assert.match(await wes.page.locator("[data-media-path]").textContent(), /media: /);
  if (remote) assert.equal(await remoteAddress(wes.page), remote, `${label}: media goes to ${remote}`);
  for (const { page } of [pat, wes]) talksOnlyToTheOrigin(page);
  figures.push(`${label}: join → first frame ${Math.round(firstFrame - wes.clicked)} ms (path ${path})`);
  await pat.page.context().close();
  await wes.page.context().close();
  return path;
}

test("NATed attendees over https: on camera and watching, media direct over UDP", { skip: missing ?? false }, async () => {
  const path = await scenario("udp", /^direct UDP$/);
  assert.equal(path, "direct UDP");
});

// Signs `page` in through the emailed link (organisers) or registers for the event first.
async function signIn(page, email, { register } = {}) {
  if (register) {
    await page.goto(`${rt.origin}/?event=default/netgala`);
    await page.fill("#reg-name", register);
    await page.fill("#reg-email", email);
    await page.click("#register button[type=submit]");
  } else {
    await page.goto(`${rt.origin}/`);
    await page.fill("#signin-email", email);
    await page.click("#signin button[type=submit]");
  }
  await until(`${page.who}'s notice that a link was sent`, async () => /sent/.test(await page.locator("#notice").textContent()));
  await page.goto(await sink.link(email, SIGN_IN_LINK));
  await until(`${email} signed in`, async () => (await page.locator("#who").textContent()).includes("Sign out"));
}

test("the stage over https behind the NAT: the organiser broadcasts from the backstage, an attendee watches the stage", { skip: missing ?? false }, async () => {
  const ada = await watchedPerson("ada");
  const bob = await watchedPerson("bob");
  await signIn(ada, "ada@example.com");
  await signIn(bob, "bob@example.com", { register: "Bob Net" });

  // Ada opens the backstage from her event page and goes on camera; nothing is on air yet.
  await ada.goto(`${rt.origin}/e/default/netgala`);
  await ada.click('[data-backstage="net-stage"]');
  await ada.waitForURL(/\/backstage\/default\/net-stage\?key=/);
  const share = ada.getByRole("button", { name: "Share audio and video", exact: true });
  await share.waitFor({ timeout: 45_000 });
  await share.click();
  await until("ada on camera backstage", async () => (await ada.locator(".share-status").textContent()).includes("You are on camera"), 45_000);

  await bob.goto(`${rt.origin}/stage/default/net-stage`);
  assert.equal(await bob.evaluate(() => window.isSecureContext), true);
  await bob.locator("#live-indicator").waitFor({ timeout: 45_000 });
  assert.equal(await bob.locator("#live-indicator").textContent(), "Off air");

  await ada.getByRole("button", { name: "Broadcast", exact: true }).click();
  const pressed = await bob.evaluate(() => performance.now());
  await bob.locator("#live-indicator.on").waitFor({ timeout: 30_000 });
  await seesVideoOf(bob, "ada", 45_000);
  const firstFrame = await bob.evaluate(() => window.roundtable.firstFrameMs);
  const path = await mediaPath(bob);
  assert.match(path, /^direct UDP$/, "the stage page says its media path");
  for (const page of [ada, bob]) talksOnlyToTheOrigin(page);
  figures.push(`stage: Broadcast → first frame on the stage page ${Math.round(firstFrame - pressed)} ms (path ${path})`);
  await ada.context().close();
  await bob.context().close();
});

test("a session with a relay: a watcher behind the NAT is sent to the relay, through the proxy, and sees the speaker", { skip: missing ?? false }, async () => {
  const ada = await pageOf("ada");
  const cleo = await watchedPerson("cleo");
  await signIn(ada, "ada@example.com");
  await signIn(cleo, "cleo@example.com", { register: "Cleo Net" });

  await ada.goto(`${rt.origin}/s/default/net-talk`);
  const share = ada.getByRole("button", { name: "Share audio and video", exact: true });
  await share.waitFor({ timeout: 45_000 });
  await share.click();
  await until("ada on camera", async () => (await ada.locator(".share-status").textContent()).includes("You are on camera"), 45_000);

  await cleo.goto(`${rt.origin}/s/default/net-talk`);
  await seesVideoOf(cleo, "ada", 45_000);
  const firstFrame = await cleo.evaluate(() => window.roundtable.firstFrameMs);
  const watchAt = cleo.joinAnswers.map((a) => a.signalling?.sfu).filter(Boolean);
  assert.deepEqual(watchAt, ["/sfu/session-net-talk-relay-0"], "cleo watches at the session's relay, through the proxy");
  talksOnlyToTheOrigin(cleo);
  const path = await mediaPath(cleo);
  assert.equal(path, "direct UDP");
  figures.push(`relay: session link → first frame from the relay ${Math.round(firstFrame)} ms after navigation start (path ${path})`);
  await ada.context().close();
  await cleo.context().close();
});

test("with every UDP packet dropped, video still arrives through TURN over TCP and the page says so", { skip: missing ?? false }, async () => {
  // TCP only to the origin and the TURN server: the SFU's own TCP port (ICE-TCP, which a
  // browser prefers to a relay when both work) is closed too.
  net.onlyTcpTo([8443, 3478]);
  try {
    await scenario("turn-tcp", /^TURN\/TCP$/);
    assert.ok(net.droppedUdp() > 0, "the firewall really dropped UDP");
  } finally {
    net.openAll();
  }
});

test("with every UDP packet dropped and no TURN server, video arrives over ICE-TCP to the SFU's media port and the page says so", { skip: missing ?? false }, async () => {
  // The same server without TURN: join answers carry no TURN server at all.
  await stopRoundtable();
  rt = await startRoundtable({ turn: false });
  net.blockUdp();
  try {
    await scenario("ice-tcp", /^direct TCP$/, { turn: false });
    assert.ok(net.droppedUdp() > 0, "the firewall really dropped UDP");
  } finally {
    net.allowUdp();
  }
});

test("with only the HTTPS ports open (no UDP, TCP only to 443), video arrives through TURN over TLS on 443 and the page says so", { skip: missing ?? false }, async () => {
  // The join answers name one TURN server, turns: on 443 (coturn with the test CA's
  // certificate, which the attendee's Chromium trusts); the SFU's media port is closed by the
  // firewall on UDP and TCP alike.
  await stopRoundtable();
  rt = await startRoundtable({ turn: "tls" });
  net.onlyHttps();
  try {
    await scenario("turns-443", /^TURN\/TLS$/);
    assert.ok(net.droppedUdp() > 0, "the firewall really dropped UDP");
  } finally {
    net.openAll();
  }
});

test("a server behind a 1:1 NAT: people open its public address, and media goes there too with --advertise-ip", { skip: missing ?? false }, async () => {
  // A cloud VM: the attendee reaches the server only at its public address, which the router
  // translates; its own address is dropped at the router.
  await stopRoundtable();
  net.behindPublicIp();
  try {
    // Without --advertise-ip the page loads, but ICE offers only the server's own address:
    // no video, and the router drops what the browser sends there.
    rt = await startRoundtable({ turn: false, publicIp: true, advertise: false });
    const lou = await joinRoom("Lou unadvertised");
    const lee = await joinRoom("Lee unadvertised");
    await new Promise((r) => setTimeout(r, 12_000));
    for (const { page } of [lou, lee]) {
      assert.equal(await page.evaluate(() => window.roundtable.firstFrameMs), null, `${page.who}: no video without --advertise-ip`);
      await page.context().close();
    }
    assert.ok(net.droppedUntranslated() > 0, "the router dropped packets sent to the server's own address");
    await stopRoundtable();

    rt = await startRoundtable({ turn: false, publicIp: true });
    await scenario("1:1 NAT", /^direct UDP$/, { turn: false, remote: net.publicIp });
    // The same NAT for an attendee without UDP: ICE-TCP to the public address, translated.
    net.blockUdp();
    try {
      await scenario("1:1 NAT, no UDP", /^direct TCP$/, { turn: false, remote: net.publicIp });
    } finally {
      net.allowUdp();
    }
  } finally {
    net.withoutPublicIp();
  }
});
