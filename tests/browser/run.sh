#!/usr/bin/env bash
# Browser end-to-end tests of the web client in local mode: `roundtable up` on a temp copy of
# examples/ with a temp SQLite file, a real SMTP server on loopback (aiosmtpd) for the emailed
# links, and headless Debian Chromium (/usr/bin/chromium, never a downloaded browser) with a
# fake camera; and (netns.test.mjs) HTTPS, NAT and a UDP-blocking firewall built from network
# namespaces, with coturn; (accounts.test.mjs) host sign-up through Keycloak's own login page
# (tests/keycloak/). Screenshots of the main pages land in tests/browser/screenshots/.
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
target="${CARGO_TARGET_DIR:-$repo/target}"
# The cargo profile of the binary under test: scripts/test-all builds every test in release.
profile="${ROUNDTABLE_CARGO_PROFILE:-dev}"
profile_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
# A debug build serves control-plane/web from the path it was built in, and a target directory
# shared by several checkouts holds one `roundtable` for all of them: keep a link to the one
# this checkout just built, and make sure it is this checkout's. (A release build embeds the
# files.)
bin_dir="$(mktemp -d)"
trap 'rm -rf "$bin_dir"' EXIT
for attempt in 1 2 3; do
  cargo build --profile "$profile" -p roundtable --bin roundtable
  ln -f "$target/$profile_dir/roundtable" "$bin_dir/roundtable" 2>/dev/null ||
    cp "$target/$profile_dir/roundtable" "$bin_dir/roundtable"
  [ "$profile" != dev ] && break
  grep -qF "$repo/control-plane/web" "$bin_dir/roundtable" && break
  if [ "$attempt" = 3 ]; then
    echo "the roundtable binary keeps being rebuilt from another checkout" >&2
    exit 1
  fi
done
export ROUNDTABLE_BIN="$bin_dir/roundtable"
cd "$here"
# disruption.test.mjs SIGKILLs and restarts `roundtable up` under live pages.
# netns.test.mjs builds real networks (namespaces, NAT, coturn) and needs root; without it
# its scenarios are skipped with the reason printed.
node --test --test-concurrency=1 e2e.test.mjs accounts.test.mjs disruption.test.mjs netns.test.mjs
