// Real networks, not loopback: `roundtable up` serves HTTPS (a test CA that the attendee's
// Chromium trusts through its NSS database) in a "server" network namespace with coturn next
// to it; Chromium runs in an "attendee" namespace behind a NAT router (iptables MASQUERADE).
// The page talks only to the control plane's origin (signalling goes through its proxy); media
// goes directly over UDP, and, when the router drops all UDP, through TURN over TCP, or, with
// no TURN server in the join answer, over ICE-TCP straight to the SFU's media port. Prints
// join → first frame per path.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";
import { CHROMIUM_ARGS, person, seesVideoOf, until, workDir } from "./harness.mjs";
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

let work, net, tls, rt, coturn, browser;
const figures = [];

// `roundtable up` in the server namespace, with coturn's URLs in every join answer when `turn`.
async function startRoundtable({ turn }) {
  const manifests = join(work, "manifests");
  mkdirSync(manifests, { recursive: true });
  writeFileSync(join(manifests, "room.yaml"), ROOM);
  const origin = `https://${net.serverIp}:8443`;
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
      "--database", join(work, "roundtable.db"), "--recordings-dir", join(work, "recordings"),
    ],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } },
  );
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
  tls = testCa(join(work, "tls"), net.serverIp);
  const secret = `turn-secret-${process.pid}-${Date.now()}`;
  writeFileSync(join(work, "turn-secret"), secret);
  coturn = startCoturn(work, net, secret, tls);
  rt = await startRoundtable({ turn: true });
  browser = await chromium.launch({ executablePath: chromiumBehindNat(work, net, tls.ca), args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  await stopRoundtable();
  coturn?.kill("SIGTERM");
  net?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
  for (const f of figures) console.log(`# ${f}`);
});

// Joins the room on camera; resolves with the page and performance.now() at the Join click.
async function joinRoom(who) {
  const page = await person(browser, who);
  page.origins = new Set();
  page.iceServers = [];
  page.on("request", (r) => page.origins.add(new URL(r.url()).origin));
  page.on("response", async (r) => {
    if (r.request().method() === "POST" && new URL(r.url()).pathname.endsWith("/join")) {
      const answer = await r.json().catch(() => ({}));
      page.iceServers.push(...(answer.iceServers || []));
    }
  });
  page.on("websocket", (ws) => page.origins.add(new URL(ws.url()).origin.replace(/^wss:/, "https:")));
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

async function scenario(label, expectPath, { turn = true } = {}) {
  const pat = await joinRoom(`Pat ${label}`);
  const wes = await joinRoom(`Wes ${label}`);
  const turnUrls = wes.page.iceServers.flatMap((s) => [s.urls].flat()).filter((u) => /^turns?:/.test(u));
  assert.equal(turnUrls.length > 0, turn, `${label}: TURN servers in the join answer: ${turnUrls}`);
  await seesVideoOf(wes.page, `Pat ${label}`, 45_000);
  await seesVideoOf(pat.page, `Wes ${label}`, 45_000);
  const firstFrame = await wes.page.evaluate(() => window.roundtable.firstFrameMs);
  const path = await mediaPath(wes.page);
  assert.match(path, expectPath, `${label}: the page says which path`);
  assert.match(await wes.page.locator("[data-media-path]").textContent(), /media: /);
  for (const { page } of [pat, wes]) {
    assert.deepEqual([...page.origins].filter((o) => o.startsWith("http")), [rt.origin], `${page.who} talks only to ${rt.origin}`);
  }
  figures.push(`${label}: join → first frame ${Math.round(firstFrame - wes.clicked)} ms (path ${path})`);
  await pat.page.context().close();
  await wes.page.context().close();
  return path;
}

test("NATed attendees over https: on camera and watching, media direct over UDP", { skip: missing ?? false }, async () => {
  const path = await scenario("udp", /^direct UDP$/);
  assert.equal(path, "direct UDP");
});

test("with every UDP packet dropped, video still arrives through TURN over TCP and the page says so", { skip: missing ?? false }, async () => {
  net.blockUdp();
  try {
    await scenario("turn-tcp", /^TURN\/TCP$/);
    assert.ok(net.droppedUdp() > 0, "the firewall really dropped UDP");
  } finally {
    net.allowUdp();
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
    assert.ok(net.droppedTcp() > 0, "the firewall really dropped TCP to the media port");
  } finally {
    net.openAll();
  }
});
