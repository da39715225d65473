#!/usr/bin/env bash
# Builds Roundtable's four container images without a container engine or a registry, from
# release binaries the build already produced (the controller-rs pattern: the image step only
# copies prebuilt binaries into a runtime base):
#
#   roundtable           cc base (glibc, libgcc, CA certificates), /usr/local/bin/roundtable
#   sfu-node             cc base, /usr/local/bin/sfu-node
#   roundtable-recorder  ffmpeg base (the cc base plus ffmpeg), /usr/local/bin/roundtable-recorder
#   coturn               coturn base (the cc base plus Debian's coturn), /usr/bin/turnserver:
#                        the chart's TURN server (`turn.enabled`); no binary of ours
#
# Each runs as uid/gid 65532 with its binary as entrypoint, like roundtable/Dockerfile and
# sfu-node/Dockerfile; the bases come from Debian packages (images/rootfs.sh) and are
# assembled with Debian's buildah into OCI archives. Nothing is pulled or pushed.
#
#   images/build.sh [--bin-dir DIR] [--tag TAG] [--repository-prefix PREFIX]
#
# --bin-dir holds roundtable, sfu-node and roundtable-recorder (default: the release output of
# $CARGO_TARGET_DIR, as `cargo build --release` leaves it); --tag defaults to the chart's
# appVersion and --repository-prefix to ghcr.io/roundtable-dev, the chart's default
# repositories. Prints `<image reference> <oci-archive>` per image on stdout.
#
# Cache (${ROUNDTABLE_CACHE:-~/.cache/roundtable}/images): a base is keyed by rootfs.sh and
# its package set, an image by its base, its stripped binary and this script, so an unchanged
# input costs a hash. Bases do not follow Debian's security updates by themselves: set
# ROUNDTABLE_IMAGE_BASE_EPOCH (e.g. to the week) to rebuild them.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
cache=${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}/images
target=${CARGO_TARGET_DIR:-${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}/target}
bin_dir="$target/release"
tag=$(awk -F'"' '/^appVersion:/ {print $2}' "$root/charts/roundtable/Chart.yaml")
prefix=ghcr.io/roundtable-dev
while [ $# -gt 0 ]; do
  case "$1" in
    --bin-dir) bin_dir=$2; shift 2 ;;
    --tag) tag=$2; shift 2 ;;
    --repository-prefix) prefix=$2; shift 2 ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
for tool in mmdebstrap buildah dpkg-deb strip sha256sum; do
  command -v "$tool" >/dev/null || { echo "build.sh: missing $tool (scripts/install-deps installs it)" >&2; exit 1; }
done

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
# buildah keeps its working containers here, apart from any other user of buildah.
buildah=(buildah --root "$cache/storage" --runroot "$cache/run" --storage-driver vfs)
hash() { sha256sum | cut -c1-16; }

# base <kind>: prints the OCI archive of the runtime base <kind> (cc or ffmpeg).
base() {
  local kind=$1 key archive c
  key=$( { cat "$here/rootfs.sh"; echo "$kind ${ROUNDTABLE_IMAGE_BASE_EPOCH:-}"; } | hash)
  archive="$cache/base-$kind-$key.tar"
  if [ ! -f "$archive" ]; then
    echo "building the $kind base from Debian packages" >&2
    "$here/rootfs.sh" "$kind" "$cache/rootfs-$kind.tar"
    c=$("${buildah[@]}" from scratch)
    "${buildah[@]}" add "$c" "$cache/rootfs-$kind.tar" / >/dev/null
    # As gcr.io/distroless/cc-debian12:nonroot, which the Dockerfiles use.
    "${buildah[@]}" config --user 65532:65532 --workingdir /home/nonroot \
      --label org.opencontainers.image.description="roundtable $kind runtime base (Debian 12)" "$c"
    "${buildah[@]}" commit --quiet --disable-compression=false --format oci --rm "$c" \
      "oci-archive:$archive.partial:roundtable-base-$kind:$key" >/dev/null
    mv "$archive.partial" "$archive"
    rm -f "$cache/rootfs-$kind.tar"
  fi
  echo "$archive"
}

# assemble <name> <base kind> <entrypoint> [file]: an image that is its base with `file`
# copied to `entrypoint` (without one, a program of the base's packages is the entrypoint);
# prints `<reference> <archive>`.
assemble() {
  local name=$1 kind=$2 entrypoint=$3 file=${4:-} base_archive key archive ref c
  base_archive=$(base "$kind")
  ref="$prefix/$name:$tag"
  key=$( { cat "$here/build.sh"; echo "$ref"; basename "$base_archive"; [ -z "$file" ] || cat "$file"; } | hash)
  archive="$cache/$name-$key.tar"
  if [ ! -f "$archive" ]; then
    echo "assembling $ref" >&2
    c=$("${buildah[@]}" from --pull-never "oci-archive:$base_archive")
    [ -z "$file" ] || "${buildah[@]}" copy --chmod 0755 "$c" "$file" "$entrypoint" >/dev/null
    "${buildah[@]}" config --user 65532:65532 --entrypoint "[\"$entrypoint\"]" --cmd '' \
      --label org.opencontainers.image.source=https://github.com/roundtable-dev/roundtable \
      --label org.opencontainers.image.version="$tag" "$c"
    "${buildah[@]}" commit --quiet --disable-compression=false --format oci --rm "$c" \
      "oci-archive:$archive.partial:$ref" >/dev/null
    mv "$archive.partial" "$archive"
  fi
  echo "$ref $archive"
}

# image <name> <base kind> <binary>: our stripped release binary on its base.
image() {
  local name=$1 kind=$2 binary=$3 stripped
  [ -x "$bin_dir/$binary" ] || { echo "build.sh: no $bin_dir/$binary; build the release binaries first" >&2; exit 1; }
  stripped="$cache/$binary.stripped"
  strip --strip-all -o "$stripped" "$bin_dir/$binary"
  assemble "$name" "$kind" "/usr/local/bin/$binary" "$stripped"
  rm -f "$stripped"
}

image roundtable cc roundtable
image sfu-node cc sfu-node
image roundtable-recorder ffmpeg roundtable-recorder
assemble coturn coturn /usr/bin/turnserver
