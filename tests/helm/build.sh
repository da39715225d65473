#!/usr/bin/env bash
# Builds the helm CLI from the helm.sh/helm/v3 module pinned in go.mod, into a cache outside
# the repository keyed by the version. Does nothing when the binary is already there. Safe to
# run concurrently (test binaries running in parallel): one build, the others wait for it.
#
#   tests/helm/build.sh           prints the path of the helm binary on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "helm.sh/helm/v3" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
client_go=$(awk '$1 == "k8s.io/client-go" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}
bin="$cache/helm-$version/bin"

# As helm's Makefile: the version `helm version` reports, and the Kubernetes version that
# `helm template` and `helm lint` assume without a cluster (client-go v0.X.Y is Kubernetes
# 1.X). Without these, helm would check charts against Kubernetes v1.20. Bump `recipe` when
# the build flags change so a cached binary is rebuilt.
k8s_minor=${client_go#v0.}; k8s_minor=${k8s_minor%%.*}
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$version -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
  ldflags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$k8s_minor"
done
recipe="$version k8s-1.$k8s_minor stamped-1"

if [ "$(cat "$bin/.recipe" 2>/dev/null)" != "$recipe" ] || [ ! -x "$bin/helm" ]; then
  mkdir -p "$cache"
  exec 9>"$cache/helm-$version.lock"
  flock 9
  if [ "$(cat "$bin/.recipe" 2>/dev/null)" != "$recipe" ] || [ ! -x "$bin/helm" ]; then
    echo "building helm $version (once; cached in $bin)" >&2
    rm -rf "$bin.partial" && mkdir -p "$bin.partial"
    (cd "$here" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" \
       -o "$bin.partial/helm" helm.sh/helm/v3/cmd/helm)
    mkdir -p "$bin"
    mv "$bin.partial/helm" "$bin/helm"
    rmdir "$bin.partial" 2>/dev/null || true
    echo "$recipe" > "$bin/.recipe"
  fi
fi
echo "$bin/helm"
