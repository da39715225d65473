#!/usr/bin/env bash
# Builds kube-apiserver, kube-controller-manager, kube-scheduler and kubectl from the
# k8s.io/kubernetes module pinned in go.mod, into a cache outside the repository keyed by
# the version. Does nothing when the binaries are already there.
#
#   tests/k8s/build.sh            prints the bin directory on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}
bin="$cache/kubernetes-$version/bin"
tools=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

missing=()
for t in "${tools[@]}"; do [ -x "$bin/$t" ] || missing+=("$t"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "building Kubernetes $version: ${missing[*]} (once; cached in $bin)" >&2
  mkdir -p "$bin.partial"
  (cd "$here" && for t in "${missing[@]}"; do
     GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$bin.partial/$t" "k8s.io/kubernetes/cmd/$t"
   done)
  mkdir -p "$bin"
  for t in "${missing[@]}"; do mv "$bin.partial/$t" "$bin/$t"; done
  rmdir "$bin.partial" 2>/dev/null || true
fi
echo "$bin"
