#!/usr/bin/env bash
# Fetches the Gateway API CRDs (standard channel) from the sigs.k8s.io/gateway-api Go module
# through the Go module proxy, checks the module against the checksum pinned below, and keeps
# the CRD files in a cache outside the repository keyed by the version. Does nothing when they
# are already there. The chart's HTTPRoute (api.httpRoute) is validated against them by the
# API server in tests/tests/helm.rs.
#
#   tests/gateway-api/fetch.sh    prints the directory of the CRD files on its last line
set -euo pipefail
version=v1.6.3
# `go mod download -json` reports this hash of the module's files (the go.sum "h1:" hash).
sum="h1:lKpJa5bGlraC/QeACvCpsHLdmO6y0iKfzVl6gzaFEYc="
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}
dir="$cache/gateway-api-$version/standard"

if [ ! -f "$dir/.sum" ] || [ "$(cat "$dir/.sum")" != "$sum" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/gateway-api-$version.lock"
  flock 9
  if [ ! -f "$dir/.sum" ] || [ "$(cat "$dir/.sum")" != "$sum" ]; then
    echo "fetching sigs.k8s.io/gateway-api $version (once; cached in $dir)" >&2
    # Outside any module; the checksum database may be out of reach, the pinned sum is not.
    info=$(cd "$cache" && GO111MODULE=on GOFLAGS=-mod=mod GOSUMDB=off \
      go mod download -json "sigs.k8s.io/gateway-api@$version")
    got=$(printf '%s' "$info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Sum"])')
    if [ "$got" != "$sum" ]; then
      echo "sigs.k8s.io/gateway-api@$version has checksum $got, expected $sum" >&2
      exit 1
    fi
    src=$(printf '%s' "$info" | python3 -c 'import json, sys; print(json.load(sys.stdin)["Dir"])')
    rm -rf "$dir.partial" && mkdir -p "$dir.partial"
    # The CustomResourceDefinitions only (the channel also ships a ValidatingAdmissionPolicy).
    for f in "$src"/config/crd/standard/*.yaml; do
      if grep -q '^kind: CustomResourceDefinition' "$f"; then cp "$f" "$dir.partial/"; fi
    done
    rm -rf "$dir" && mv "$dir.partial" "$dir"
    echo "$sum" > "$dir/.sum"
  fi
fi
echo "$dir"
