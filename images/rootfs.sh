#!/usr/bin/env bash
# Makes the root filesystem of a runtime base image from Debian 12 packages, as a tarball:
#
#   images/rootfs.sh cc  OUT.tar   glibc, libgcc, CA certificates, netbase, tzdata (what
#                                  gcr.io/distroless/cc-debian12 holds): the roundtable and
#                                  sfu-node images
#   images/rootfs.sh ffmpeg OUT.tar   the same plus ffmpeg/ffprobe and their libraries: the
#                                  roundtable-recorder image
#   images/rootfs.sh coturn OUT.tar   the same plus Debian's coturn (turnserver), whose binary
#                                  gets the file capability cap_net_bind_service so that a
#                                  non-root coturn can serve TURN over TLS on 443: the coturn
#                                  image of the chart's `turn.enabled`
#
# mmdebstrap resolves and downloads the packages (and their dependencies); only the
# packages' files are unpacked (`dpkg-deb -x`, no maintainer scripts run), so nothing of
# Debian's essential set comes along unless a library needs it. Both roots have no shell
# (dash, bash, perl, debconf are left out), a `nonroot` user with uid/gid 65532, a CA bundle
# built from the ca-certificates package as update-ca-certificates would, a linker cache
# (ldconfig) and a `/var/lib/dpkg/status.d/<package>` per package for image scanners.
# Documentation other than copyright files, man pages and translations are dropped.
set -euo pipefail
kind=${1:?usage: rootfs.sh cc|ffmpeg|coturn OUT.tar}
out=${2:?usage: rootfs.sh cc|ffmpeg|coturn OUT.tar}
suite=bookworm
mirror=${ROUNDTABLE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
security=${ROUNDTABLE_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}

case "$kind" in
  cc) include=(libc6 libgcc-s1 ca-certificates netbase tzdata) ;;
  ffmpeg) include=(libc6 libgcc-s1 ca-certificates netbase tzdata ffmpeg) ;;
  coturn) include=(libc6 libgcc-s1 ca-certificates netbase tzdata coturn) ;;
  *) echo "rootfs.sh: unknown kind $kind (cc, ffmpeg or coturn)" >&2; exit 2 ;;
esac
# Resolved as dependencies but not wanted in a runtime image: interpreters and package
# tooling (ca-certificates pulls debconf, perl-base and openssl for its maintainer scripts;
# the bundle is built below instead).
skip='^(dash|bash|perl-base|perl|perl-modules-.*|debconf|openssl|dpkg|coreutils|sensible-utils|ucf|libdebconfclient0|readline-common)$'

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
include_csv=$(IFS=,; echo "${include[*]}")
mmdebstrap --quiet --variant=extract --include="$include_csv" \
  --skip=download/empty --skip=cleanup/apt/cache \
  "$suite" "$work/download" \
  "deb $mirror $suite main" "deb $mirror $suite-updates main" "deb $security $suite-security main" >&2

root="$work/root"
mkdir -p "$root/var/lib/dpkg/status.d"
for deb in "$work"/download/var/cache/apt/archives/*.deb; do
  package=$(dpkg-deb -f "$deb" Package)
  [[ $package =~ $skip ]] && continue
  dpkg-deb -x "$deb" "$root"
  dpkg-deb -f "$deb" > "$root/var/lib/dpkg/status.d/$package"
done

# What update-ca-certificates would write: every certificate of the package, enabled.
mkdir -p "$root/etc/ssl/certs"
find "$root/usr/share/ca-certificates" -name '*.crt' | LC_ALL=C sort | xargs cat \
  > "$root/etc/ssl/certs/ca-certificates.crt"

# Users as in distroless: root, nobody and nonroot (65532), with no login shell.
cat > "$root/etc/passwd" <<'EOF'
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
EOF
cat > "$root/etc/group" <<'EOF'
root:x:0:
nobody:x:65534:
nonroot:x:65532:
EOF
printf 'passwd: files\ngroup: files\nhosts: files dns\n' > "$root/etc/nsswitch.conf"
install -d -m 0700 "$root/root"
install -d -m 0700 -o 65532 -g 65532 "$root/home/nonroot"
install -d -m 1777 "$root/tmp"
ln -sf /usr/share/zoneinfo/Etc/UTC "$root/etc/localtime"
# ca-certificates' own tool is a shell script with nothing to run it.
rm -f "$root/usr/sbin/update-ca-certificates"

# Documentation and translations; copyright files stay (licences).
find "$root/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
find "$root/usr/share/doc" -type d -empty -delete 2>/dev/null || true
rm -rf "$root"/usr/share/{man,info,locale,lintian,linda,bug,menu}
# A library that needs a shell at run time would be a surprise: say so rather than ship one.
for shell in bin/sh bin/dash bin/bash usr/bin/perl; do
  [ ! -e "$root/$shell" ] || { echo "rootfs.sh: $shell ended up in the $kind root" >&2; exit 1; }
done

if [ "$kind" = ffmpeg ]; then
  # Loaded only by hardware decoders/renderers through dlopen (Mesa's DRI drivers and the
  # LLVM they need, Intel Media SDK and VDPAU plugins) or interactive (ffplay): the
  # recorder encodes in software. ffmpeg's and ffprobe's link closure is checked below.
  rm -rf "$root"/usr/lib/x86_64-linux-gnu/{dri,mfx,vdpau} "$root"/usr/lib/x86_64-linux-gnu/libLLVM* \
    "$root"/usr/lib/x86_64-linux-gnu/libz3.so* "$root"/usr/bin/ffplay
fi

# Libraries that Debian reaches through update-alternatives (not run here) are found through
# the linker cache instead; libc-bin's ld.so.conf is not unpacked, so write its one line.
echo 'include /etc/ld.so.conf.d/*.conf' > "$root/etc/ld.so.conf"
for dir in blas lapack; do
  [ ! -d "$root/usr/lib/x86_64-linux-gnu/$dir" ] || echo "/usr/lib/x86_64-linux-gnu/$dir"
done > "$root/etc/ld.so.conf.d/debian-alternatives.conf"
ldconfig -r "$root"
if [ "$kind" = coturn ]; then
  # coturn's init script and database set-up scripts need a shell, and its client library
  # is for building clients: the image runs turnserver with its arguments only.
  rm -rf "$root"/etc/init.d "$root"/usr/share/coturn "$root"/usr/include/turn "$root"/usr/lib/libturnclient.a
  if ! chroot "$root" /usr/bin/turnserver --version >/dev/null 2>&1; then
    echo "rootfs.sh: /usr/bin/turnserver does not run in the $kind root" >&2
    exit 1
  fi
  # Ports below 1024 (TURN over TLS on 443) for a non-root turnserver, as the upstream coturn
  # image does; it takes effect only where the pod allows it (the chart's `turn.tls`).
  setcap cap_net_bind_service=+ep "$root/usr/bin/turnserver"
fi
if [ "$kind" = ffmpeg ]; then
  for program in ffmpeg ffprobe; do
    if ! chroot "$root" "/usr/bin/$program" -hide_banner -version >/dev/null; then
      echo "rootfs.sh: /usr/bin/$program does not run in the $kind root" >&2
      exit 1
    fi
  done
fi
# Reproducible-ish: fixed times, sorted names, numeric owners; the one extended attribute
# kept is a file capability (turnserver's).
tar --sort=name --mtime='@0' --numeric-owner --xattrs --xattrs-include='security.capability' \
  -C "$root" -cf "$out" .
