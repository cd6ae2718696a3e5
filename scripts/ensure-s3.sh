#!/usr/bin/env bash
# Makes sure the S3-compatible test server (moto's server) is installed, in a
# virtual environment cached outside the clone, and prints the Python that
# runs it: `"$(scripts/ensure-s3.sh)" -m moto.server -H 127.0.0.1 -p PORT`.
# Installs only when absent or at another version; safe to run repeatedly.
# Progress goes to stderr, so stdout holds the path alone.
#
# Environment: SHARDLINE_S3_VENV (default ~/.cache/shardline/venv),
# PYTHON (default python3).
set -euo pipefail

MOTO_VERSION="5.2.5"
VENV="${SHARDLINE_S3_VENV:-$HOME/.cache/shardline/venv}"
PYTHON="${PYTHON:-python3}"
VENV_PYTHON="$VENV/bin/python"

installed_version() {
  "$VENV_PYTHON" - <<'EOF' 2>/dev/null
import importlib.metadata
import moto.server  # noqa: F401  (the server extra's imports must work too)
print(importlib.metadata.version("moto"))
EOF
}

if [[ -x "$VENV_PYTHON" ]] && [[ "$(installed_version || true)" == "$MOTO_VERSION" ]]; then
  echo "$VENV_PYTHON"
  exit 0
fi

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "error: $PYTHON is not installed; install Python 3 (Debian: apt-get install python3 python3-venv) and run this again" >&2
  exit 2
fi

echo "installing moto[server]==$MOTO_VERSION into $VENV (one time)" >&2
mkdir -p "$(dirname "$VENV")"
if [[ ! -x "$VENV_PYTHON" ]]; then
  if ! "$PYTHON" -m venv "$VENV" >&2; then
    echo "error: cannot create a virtual environment with $PYTHON; on Debian: apt-get install python3-venv" >&2
    exit 2
  fi
fi
"$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION" >&2

version="$(installed_version || true)"
if [[ "$version" != "$MOTO_VERSION" ]]; then
  echo "error: moto[server] did not install cleanly into $VENV (found version '${version:-none}'); remove $VENV and run this again" >&2
  exit 1
fi
echo "$VENV_PYTHON"
