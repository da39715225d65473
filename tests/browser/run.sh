#!/usr/bin/env bash
# Browser end-to-end tests of the web client in local mode: `roundtable up` on a temp copy of
# examples/ with a temp SQLite file, a real SMTP server on loopback (aiosmtpd) for the emailed
# links, and headless Debian Chromium (/usr/bin/chromium, never a downloaded browser) with a
# fake camera. Screenshots of the main pages land in tests/browser/screenshots/.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ]; then apt_get=(apt-get); else apt_get=(sudo apt-get); fi
  "${apt_get[@]}" update -qq
  DEBIAN_FRONTEND=noninteractive "${apt_get[@]}" install -y -qq chromium
fi

cd "$here"
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
if [ ! -d node_modules/playwright-core ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
SMTP_SINK_PYTHON="$("$here/smtp-venv.sh")"
export SMTP_SINK_PYTHON

cd "$repo"
cargo build -p roundtable-operator --bin roundtable
target="${CARGO_TARGET_DIR:-$repo/target}"
export ROUNDTABLE_BIN="$target/debug/roundtable"
cd "$here"
node --test --test-concurrency=1 e2e.test.mjs
