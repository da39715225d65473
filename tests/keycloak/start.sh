#!/usr/bin/env bash
# Starts Keycloak (the server distribution from Maven Central, see build.sh) as a real OpenID
# Connect provider for tests: a private copy in a temporary directory, an in-memory database,
# HTTP on 127.0.0.1:<port>, and realm `roundtable` imported from realm.json with two users
# (ada, whose email is verified; mallory, whose email is not) and the confidential client
# `roundtable` (PKCE S256 required) that may return to <redirect> (Keycloak's pattern syntax:
# a trailing * is a wildcard).
#
#   start.sh <port> <redirect> <client secret>        (port 0: a free one)
#
# Prints "ready <issuer>" once the realm answers, then keeps Keycloak running until its
# standard input closes (the test that started it exited), stops it and removes the copy.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
port=$1 redirect=$2 secret=$3
if [ "$port" = 0 ]; then
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
fi
home=$("$here/build.sh")
dir=$(mktemp -d "${TMPDIR:-/tmp}/roundtable-keycloak.XXXXXX")
cp -a "$home/." "$dir/"
mkdir -p "$dir/data/import"
python3 - "$here/realm.json" "$dir/data/import/roundtable.json" "$redirect" "$secret" <<'PY'
import json, sys
src, dst, redirect, secret = sys.argv[1:]
text = open(src).read().replace("__REDIRECT__", redirect).replace("__SECRET__", secret)
json.loads(text)
open(dst, "w").write(text)
PY
log="$dir/keycloak.log"
KC_BOOTSTRAP_ADMIN_USERNAME=admin KC_BOOTSTRAP_ADMIN_PASSWORD="$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')" \
  "$dir/bin/kc.sh" start-dev --import-realm --db=dev-mem \
  --http-host=127.0.0.1 --http-port="$port" --http-management-port=0 \
  --hostname="http://127.0.0.1:$port" --cache=local >"$log" 2>&1 </dev/null &
kc=$!
stop() {
  kill -TERM "$kc" 2>/dev/null || true
  wait "$kc" 2>/dev/null || true
  rm -rf "$dir"
}
trap stop EXIT
issuer="http://127.0.0.1:$port/realms/roundtable"
for _ in $(seq 1 600); do
  if curl -fsS -o /dev/null "$issuer/.well-known/openid-configuration" 2>/dev/null; then
    # The first start re-builds Keycloak for these options (minutes on a busy machine): keep
    # that build in the cached distribution, so later copies start without it.
    if [ ! -e "$home/.roundtable-dev-build" ]; then
      cp -a "$dir/lib/quarkus/." "$home/lib/quarkus/" && touch "$home/.roundtable-dev-build"
    fi
    echo "ready $issuer"
    cat >/dev/null || true
    exit 0
  fi
  if ! kill -0 "$kc" 2>/dev/null; then
    echo "Keycloak exited before it was ready:" >&2
    tail -40 "$log" >&2
    exit 1
  fi
  sleep 0.5
done
echo "Keycloak was not ready after 300 seconds:" >&2
tail -40 "$log" >&2
exit 1
