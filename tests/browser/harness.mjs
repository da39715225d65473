// What the browser scenarios run against: a real `roundtable up` on loopback (temp SQLite
// file, temp copy of examples/), a real SMTP server (aiosmtpd) receiving its emails, and
// Debian's Chromium with a fake camera. Nothing here answers in place of the product.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

const CHROMIUM = process.env.CHROMIUM_PATH || "/usr/bin/chromium";

// The same flags as sfu-node/tests/browser: no sandbox in CI containers, a fake camera and
// microphone, and permission prompts answered yes.
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--use-fake-device-for-media-stream",
  "--use-fake-ui-for-media-stream",
];

export async function until(what, fn, ms = 20_000) {
  const end = Date.now() + ms;
  let last;
  while (Date.now() < end) {
    last = await fn();
    if (last) return last;
    await new Promise((r) => setTimeout(r, 150));
  }
  assert.fail(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`);
}

function firstLine(child, match, what) {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: child.stdout });
    const onExit = (code) => reject(new Error(`${what} exited (${code}) before it was ready`));
    child.once("exit", onExit);
    lines.on("line", (line) => {
      const m = line.match(match);
      if (m) {
        child.off("exit", onExit);
        resolve(m);
      }
    });
  });
}

// A real SMTP server on loopback; every message lands in a folder as decoded JSON.
export async function startSmtpSink(work) {
  const python = process.env.SMTP_SINK_PYTHON;
  assert.ok(python, "set SMTP_SINK_PYTHON to the python of the aiosmtpd virtualenv (run.sh does)");
  const dir = join(work, "mail");
  mkdirSync(dir);
  const child = spawn(python, [new URL("smtp_sink.py", import.meta.url).pathname, dir], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const [, port] = await firstLine(child, /"port":\s*(\d+)/, "the SMTP sink");
  const read = () =>
    readdirSync(dir)
      .filter((f) => f.endsWith(".json"))
      .sort()
      .map((f) => JSON.parse(readFileSync(join(dir, f), "utf8")));
  return {
    url: `smtp://127.0.0.1:${port}`,
    // The newest email to `to` whose text matches `pattern`; resolves with the match.
    async link(to, pattern) {
      return until(`an email to ${to} matching ${pattern}`, () => {
        const mails = read().filter((m) => m.to.includes(to)).reverse();
        for (const m of mails) {
          const found = m.text.match(pattern);
          if (found) return found[0];
        }
        return false;
      });
    },
    count: (to) => read().filter((m) => m.to.includes(to)).length,
    stop: () => child.kill("SIGTERM"),
  };
}

// Moves a manifest's schedule around `now`, so a scheduled stage is live during the test.
function liveNow(path, now) {
  const start = new Date(now - 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const end = new Date(now + 3 * 3600_000).toISOString().replace(/\.\d+Z$/, "Z");
  const text = readFileSync(path, "utf8")
    .replace(/^(\s*)start: .*$/m, `$1start: "${start}"`)
    .replace(/^(\s*)end: .*$/m, `$1end: "${end}"`);
  writeFileSync(path, text);
}

export const workDir = () => mkdtempSync(join(tmpdir(), "roundtable-browser-"));

export async function startRoundtable({ work, examples, smtpUrl }) {
  const bin = process.env.ROUNDTABLE_BIN;
  assert.ok(bin, "set ROUNDTABLE_BIN to the roundtable binary (run.sh does)");
  const manifests = join(work, "examples");
  cpSync(examples, manifests, { recursive: true });
  // The gala's stage is scheduled for December: in this copy it runs now. Sessions keep their
  // schedule; an organiser presses "Start" on the page.
  liveNow(join(manifests, "stage.yaml"), Date.now());
  // The backstage cap is the Stage's maxSpeakers (5 in the example, the most allowed); two
  // here, so two fake cameras reach it and a third speaker sees the button greyed out.
  const stage = join(manifests, "stage.yaml");
  writeFileSync(stage, readFileSync(stage, "utf8").replace(/maxSpeakers: 5/, "maxSpeakers: 2"));
  const child = spawn(
    bin,
    [
      "up",
      manifests,
      "--listen",
      "127.0.0.1:0",
      "--media-ip",
      "127.0.0.1",
      "--database",
      join(work, "roundtable.db"),
      // Sessions with recording on record while the scenarios run; keep that out of the repo.
      "--recordings-dir",
      join(work, "recordings"),
      "--smtp-url",
      smtpUrl,
    ],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, RUST_LOG: process.env.RUST_LOG || "warn" } },
  );
  const [, url] = await firstLine(child, /running at (http:\/\/127\.0\.0\.1:\d+)/, "roundtable up");
  return {
    url,
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

// One person: a browser context of their own (their own cookies), one page, and every page
// error collected so a scenario can assert there were none.
export async function person(browser, who, { init } = {}) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  if (init) await context.addInitScript(init);
  return tab(context, who);
}

// Another tab of the same person (same cookies).
export async function tab(context, who) {
  const page = await context.newPage();
  page.errors = [];
  page.on("pageerror", (e) => page.errors.push(`${who}: ${e.message}`));
  page.who = who;
  return page;
}

export async function shot(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}
