#!/usr/bin/env bash
# Fetches Keycloak's server distribution from Maven Central once per version, checks its SHA-1
# against Central's, unpacks it into the cache, and prints the directory holding bin/kc.sh.
# The control plane's OpenID Connect tests start it as the real identity provider.
# Needs Java 17 or newer (scripts/install-deps installs Debian's default-jre-headless if missing).
set -euo pipefail
version=${KEYCLOAK_VERSION:-26.4.7}
cache="${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}"
home="$cache/keycloak-$version"
if [ ! -x "$home/bin/kc.sh" ]; then
  mkdir -p "$cache"
  url="https://repo1.maven.org/maven2/org/keycloak/keycloak-quarkus-dist/$version/keycloak-quarkus-dist-$version.zip"
  tmp=$(mktemp -d "$cache/keycloak-download.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  echo "downloading Keycloak $version from Maven Central" >&2
  curl -fsSL --retry 3 -o "$tmp/kc.zip" "$url"
  want=$(curl -fsSL --retry 3 "$url.sha1" | cut -c1-40)
  got=$(sha1sum "$tmp/kc.zip" | cut -c1-40)
  [ "$want" = "$got" ] || { echo "Keycloak $version: SHA-1 $got, Maven Central says $want" >&2; exit 1; }
  (cd "$tmp" && python3 -m zipfile -e kc.zip unpacked)
  rm -rf "$home"
  mv "$tmp/unpacked/keycloak-$version" "$home"
  chmod +x "$home"/bin/*.sh
fi
echo "$home"
