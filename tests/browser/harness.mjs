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

// Video frames decoded so far on `page` in the tile of the person named `name` (0 without one).
export const framesOf = (page, name) =>
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

// More than zero decoded frames of `name`'s camera on `page`, and still rising a second later.
export async function seesVideoOf(page, name, ms = 20_000) {
  const first = await until(`${page.who} decodes ${name}'s video`, async () => {
    const n = await framesOf(page, name);
    return n > 0 ? n : false;
  }, ms);
  await new Promise((r) => setTimeout(r, 1200));
  const later = await framesOf(page, name);
  assert.ok(later > first, `${page.who}: frames of ${name} should rise (${first} then ${later})`);
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

// A real SMTP server on loopback (of the network namespace `netns`, if given); every message
// lands in a folder as decoded JSON.
export async function startSmtpSink(work, { netns } = {}) {
  const python = process.env.SMTP_SINK_PYTHON;
  assert.ok(python, "set SMTP_SINK_PYTHON to the python of the aiosmtpd virtualenv (run.sh does)");
  const dir = join(work, "mail");
  mkdirSync(dir);
  const command = [python, new URL("smtp_sink.py", import.meta.url).pathname, dir];
  if (netns) command.unshift("ip", "netns", "exec", netns);
  const child = spawn(command[0], command.slice(1), {
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

// Keycloak, the real OpenID Connect provider (tests/keycloak/start.sh): its own login page,
// realm `roundtable` with user ada / ada-password. It stops when `stop()` closes its input.
export async function startKeycloak(redirect = "http://127.0.0.1:*") {
  const script = new URL("../keycloak/start.sh", import.meta.url).pathname;
  const secret = "browser-test-secret";
  const child = spawn(script, ["0", redirect, secret], { stdio: ["pipe", "pipe", "inherit"] });
  const [, issuer] = await firstLine(child, /^ready (\S+)/, "Keycloak");
  return {
    issuer,
    secret,
    stop: () => new Promise((r) => {
      child.once("exit", r);
      child.stdin.end();
    }),
  };
}

function withoutRustLog(env) {
  const { RUST_LOG, ...rest } = env;
  return rest;
}

export const workDir = () => mkdtempSync(join(tmpdir(), "roundtable-browser-"));

// `listen` defaults to a free port; a scenario that restarts the server passes the address it
// had, so the pages it serves find it again (and the SQLite file in `work` is reused).
export async function startRoundtable({ work, examples, smtpUrl, listen = "127.0.0.1:0", extraArgs = [] }) {
  const bin = process.env.ROUNDTABLE_BIN;
  assert.ok(bin, "set ROUNDTABLE_BIN to the roundtable binary (run.sh does)");
  const manifests = join(work, "examples");
  cpSync(examples, manifests, { recursive: true });
  // The gala's sessions and stage keep their December schedule: an organiser presses
  // "Start" on the page, as a person trying the examples does.
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
      listen,
      "--database",
      join(work, "roundtable.db"),
      // Sessions with recording on record while the scenarios run; keep that out of the repo.
      "--recordings-dir",
      join(work, "recordings"),
      "--smtp-url",
      smtpUrl,
      ...extraArgs,
    ],
    // The default log levels, as a person running `./scripts/run` reads them: the scenarios
    // check what that terminal shows.
    { stdio: ["ignore", "pipe", "pipe"], env: withoutRustLog(process.env) },
  );
  // Everything `roundtable up` printed, in order (stdout and stderr); warnings and errors are
  // also shown here as they come.
  const terminal = [];
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on("line", (line) => {
      terminal.push(line);
      if (/\b(WARN|ERROR)\b/.test(line)) process.stderr.write(`roundtable: ${line}\n`);
    });
  }
  const [, url] = await firstLine(child, /running at (http:\/\/127\.0\.0\.1:\d+)/, "roundtable up");
  return {
    url,
    terminal: () => terminal.slice(),
    async stop() {
      await this.kill("SIGTERM");
    },
    // Ends the process with `signal` (SIGKILL: no goodbye to anyone) and waits for it to go.
    async kill(signal) {
      const gone = new Promise((r) => (child.exitCode !== null || child.signalCode !== null ? r() : child.once("exit", r)));
      child.kill(signal);
      await gone;
    },
  };
}

export async function launchBrowser() {
  return chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
}

// One person: a browser context of their own (their own cookies), one page, and every page
// error (uncaught exceptions, and anything the Content-Security-Policy blocked) collected so a
// scenario can assert there were none.
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
  page.on("console", (m) => {
    if (m.type() === "error" && /Content.Security.Policy/i.test(m.text())) page.errors.push(`${who}: ${m.text()}`);
  });
  page.who = who;
  return page;
}

export async function shot(page, dir, name) {
  mkdirSync(dir, { recursive: true });
  await page.screenshot({ path: join(dir, `${name}.png`) });
}
