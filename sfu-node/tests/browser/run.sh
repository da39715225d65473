#!/usr/bin/env bash
# Browser test: headless Chromium (Debian's /usr/bin/chromium, never a downloaded one)
# publishes its fake camera through sfu-node; a second page watches.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../.." && pwd)"

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

cd "$repo"
# The cargo profile of the binary under test: scripts/test-all builds every test in release.
profile="${ROUNDTABLE_CARGO_PROFILE:-dev}"
profile_dir=$([ "$profile" = dev ] && echo debug || echo "$profile")
cargo build --profile "$profile" -p sfu-node --bin sfu-node
target="${CARGO_TARGET_DIR:-$repo/target}"
export SFU_NODE_BIN="$target/$profile_dir/sfu-node"
cd "$here"
node --test sfu.test.mjs
