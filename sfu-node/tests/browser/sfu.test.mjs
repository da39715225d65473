// Headless Chromium publishes its fake camera through sfu-node; a second page watches.
// Asserts decoded video frames (more than zero and rising) and the counts the watcher sees.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createServer } from "node:http";
import { createHmac } from "node:crypto";
import { readFileSync } from "node:fs";
import { networkInterfaces } from "node:os";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const here = new URL(".", import.meta.url);
const KEY = "browser-test-key";
const ROOM = "browser-room";
const SFU_BIN = process.env.SFU_NODE_BIN;
const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

let sfu, sfuAddrs, pageServer, pageOrigin, browser;

function b64url(s) {
  return Buffer.from(s).toString("base64url");
}

function token(sub, grants) {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64url(
    JSON.stringify({
      sub,
      room: ROOM,
      exp: Math.floor(Date.now() / 1000) + 3600,
      name: `Name ${sub}`,
      headline: "Browser test",
      color: "#1e88e5",
      grants: { watch: true, ...grants },
    }),
  );
  const sig = createHmac("sha256", KEY).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${sig}`;
}

// The media socket goes on this machine's network address, as in a cluster: Chromium does not
// send WebRTC media from its network addresses to a loopback candidate.
const MEDIA_IP =
  Object.values(networkInterfaces())
    .flat()
    .find((a) => a.family === "IPv4" && !a.internal)?.address || "127.0.0.1";

before(async () => {
  assert.ok(SFU_BIN, "set SFU_NODE_BIN to the sfu-node binary (run.sh does)");
  sfu = spawn(
    SFU_BIN,
    [
      "--room", ROOM, "--token-key", KEY,
      "--http-addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0",
      "--udp-bind", MEDIA_IP, "--udp-port", "0", "--drain-grace-seconds", "1",
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const lines = createInterface({ input: sfu.stdout });
  sfuAddrs = JSON.parse(await new Promise((resolve) => lines.once("line", resolve)));

  const files = { "/page.js": ["page.js", "text/javascript"], "/": ["page.html", "text/html"] };
  pageServer = createServer((req, res) => {
    const [name, type] = files[new URL(req.url, "http://x").pathname] || [];
    if (!name) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "content-type": type }).end(readFileSync(new URL(name, here)));
  });
  await new Promise((resolve) => pageServer.listen(0, "127.0.0.1", resolve));
  pageOrigin = `http://127.0.0.1:${pageServer.address().port}`;

  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-device-for-media-stream",
      "--use-fake-ui-for-media-stream",
    ],
  });
});

after(async () => {
  await browser?.close();
  pageServer?.close();
  sfu?.kill("SIGTERM");
});

function url(role, tok) {
  const q = new URLSearchParams({ role, token: tok, room: ROOM, sfu: `http://${sfuAddrs.http}` });
  return `${pageOrigin}/?${q}`;
}

async function until(what, fn, ms = 15000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

test("a watcher decodes the publisher's fake camera and sees the live counts", async () => {
  const context = await browser.newContext();
  const publisher = await context.newPage();
  await publisher.goto(url("publish", token("alice", { share: true })));
  await until("publishing", async () =>
    (await publisher.textContent("#state")) === "publishing" ||
    (await publisher.evaluate(() => window.errors.length ? window.errors : false)));
  assert.deepEqual(await publisher.evaluate(() => window.errors), []);

  const watcher = await context.newPage();
  await watcher.goto(url("watch", token("bob", {})));
  await until("watching", async () =>
    (await watcher.textContent("#state")) === "watching" ||
    (await watcher.evaluate(() => window.errors.length ? window.errors : false)));
  assert.deepEqual(await watcher.evaluate(() => window.errors), []);

  const first = await until("decoded frames", async () => {
    const n = await watcher.evaluate(() => window.framesDecoded());
    return n > 0 ? n : false;
  });
  await new Promise((r) => setTimeout(r, 2000));
  const later = await watcher.evaluate(() => window.framesDecoded());
  assert.ok(later > first, `frames decoded should rise: ${first} then ${later}`);

  await until("counts", async () =>
    (await watcher.textContent("#watching")) === "1" &&
    (await watcher.textContent("#on-camera")) === "1");

  // The sfu-node agrees.
  const stats = await (await fetch(`http://${sfuAddrs.admin}/stats`)).json();
  assert.equal(stats.counts.on_camera, 1);
  assert.equal(stats.counts.watching, 1);
  assert.ok(stats.media.frames_forwarded > 0);
  await context.close();
});
