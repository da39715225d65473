#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, and kubelet and
# kube-proxy (for the real-node test, tests/tests/real_node.rs) from the
# k8s.io/kubernetes module pinned in go.mod, into a cache outside the repository keyed by
# the version. Does nothing when the binaries are already there. Safe to run concurrently
# (test binaries running in parallel): one build, the others wait for it.
#
#   tests/k8s/build.sh            prints the bin directory on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}
bin="$cache/kubernetes-$version/bin"
# A tool added here is built alone into an existing cache: `missing` rebuilds everything only
# when the recipe changed.
tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

# What `--version`, /version and the client-go user agent report; `go build` alone leaves
# v0.0.0-master. Bump `recipe` when the build flags change so cached binaries are rebuilt.
minor=${version#v1.}; minor=${minor%%.*}
stamp=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  stamp+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
recipe="$version stamped-1"

missing() {
  local t
  [ "$(cat "$bin/.recipe" 2>/dev/null)" = "$recipe" ] || { echo "${tools[*]}"; return; }
  for t in "${tools[@]}"; do [ -x "$bin/$t" ] || echo "$t"; done
}

if [ -n "$(missing)" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/kubernetes-$version.lock"
  flock 9
  todo=($(missing))
  if [ ${#todo[@]} -gt 0 ]; then
    echo "building Kubernetes $version: ${todo[*]} (once; cached in $bin)" >&2
    rm -rf "$bin.partial" && mkdir -p "$bin.partial"
    (cd "$here" && for t in "${todo[@]}"; do
       GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w$stamp" -o "$bin.partial/$t" "k8s.io/kubernetes/cmd/$t"
     done)
    mkdir -p "$bin"
    for t in "${todo[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
    rmdir "$bin.partial" 2>/dev/null || true
    echo "$recipe" > "$bin/.recipe"
  fi
fi
echo "$bin"
