#!/usr/bin/env bash
# Prints the python of a virtualenv with the SMTP sink's packages (aiosmtpd), creating it
# first if needed. Cached outside the repo, keyed by requirements.txt, so it is built once.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
req="$here/requirements.txt"
cache="${ROUNDTABLE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/roundtable}"
venv="$cache/venv-smtp-$(sha256sum "$req" | cut -c1-12)"
if ! "$venv/bin/python" -c "import aiosmtpd" 2>/dev/null; then
  rm -rf "$venv"
  python3 -m venv "$venv" >&2
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2
fi
echo "$venv/bin/python"
