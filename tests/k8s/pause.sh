#!/usr/bin/env bash
# Builds the pod sandbox ("pause") image for the real-node test bed from the pause.c of the
# k8s.io/kubernetes module pinned in go.mod (no registry is reachable to pull
# registry.k8s.io/pause), statically linked as upstream builds it, assembled with buildah
# into an OCI archive cached outside the repository. containerd is configured with
# `sandbox_image` set to the reference printed.
#
#   tests/k8s/pause.sh     prints `<image reference> <oci-archive>` on its last line
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
version=$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$here/go.mod")
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}/images
module=$(cd "$here" && GOFLAGS=-mod=mod go list -m -f '{{.Dir}}' k8s.io/kubernetes)
tag=$(awk '$1 == "TAG" && $2 == "?=" {print $3; exit}' "$module/build/pause/Makefile")
ref="localhost/roundtable-e2e/pause:$tag"
archive="$cache/pause-$tag-$version.tar"

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if [ ! -f "$archive" ]; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  gcc -Os -Wall -Werror -static -DVERSION="v$tag-$version" -o "$work/pause" "$module/build/pause/linux/pause.c"
  strip "$work/pause"
  buildah=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
  c=$("${buildah[@]}" from scratch)
  "${buildah[@]}" copy --chmod 0755 "$c" "$work/pause" /pause >/dev/null
  "${buildah[@]}" config --user 65535:65535 --entrypoint '["/pause"]' "$c"
  "${buildah[@]}" commit --quiet --format oci --rm "$c" "oci-archive:$archive.partial:$ref" >/dev/null
  mv "$archive.partial" "$archive"
fi
echo "$ref $archive"
