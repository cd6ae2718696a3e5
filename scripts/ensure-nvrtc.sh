#!/usr/bin/env bash
# Makes sure NVRTC 13.0 (the CUDA runtime compiler) and the CUDA 13.0 runtime
# headers are installed from PyPI into a virtual environment cached outside
# the clone, so the CUDA kernels can be compile-checked on machines without a
# GPU or a CUDA toolkit. Prints two lines on stdout:
#
#   SHARDLINE_NVRTC_LIB_DIR=<folder holding libnvrtc.so.13>
#   SHARDLINE_CUDA_INCLUDE_DIR=<folder holding cuda_runtime.h>
#
# so that `eval "$(scripts/ensure-nvrtc.sh)"; export SHARDLINE_NVRTC_LIB_DIR
# SHARDLINE_CUDA_INCLUDE_DIR` sets both. Installs only when absent or at
# another version; safe to run repeatedly. Progress goes to stderr.
#
# Environment: SHARDLINE_NVRTC_VENV (default ~/.cache/shardline/nvrtc-venv),
# PYTHON (default python3).
set -euo pipefail

# CUDA 13.0 is what the GPU machines' driver (580) runs: newer NVRTC emits
# PTX that driver rejects, so the version is pinned to the 13.0 series.
SERIES="13.0"
VENV="${SHARDLINE_NVRTC_VENV:-$HOME/.cache/shardline/nvrtc-venv}"
PYTHON="${PYTHON:-python3}"
VENV_PYTHON="$VENV/bin/python"

# Prints "<lib dir> <include dir>" when both packages of the series are
# installed and their files are where expected.
locate() {
  "$VENV_PYTHON" - "$SERIES" <<'EOF' 2>/dev/null
import importlib.metadata as md, pathlib, sys
series = sys.argv[1]
for pkg in ("nvidia-cuda-nvrtc", "nvidia-cuda-runtime"):
    v = md.version(pkg)
    if not (v == series or v.startswith(series + ".")):
        sys.exit(1)
import nvidia
roots = [pathlib.Path(p) for p in nvidia.__path__]
for root in roots:
    lib, inc = root / "cu13" / "lib", root / "cu13" / "include"
    if (lib / "libnvrtc.so.13").exists() and (inc / "cuda_runtime.h").exists():
        print(lib, inc)
        sys.exit(0)
sys.exit(1)
EOF
}

if [[ -x "$VENV_PYTHON" ]] && dirs="$(locate)"; then
  :
else
  if ! command -v "$PYTHON" >/dev/null 2>&1; then
    echo "error: $PYTHON is not installed; install Python 3 (Debian: apt-get install python3 python3-venv) and run this again" >&2
    exit 2
  fi
  echo "installing nvidia-cuda-nvrtc==$SERIES.* and nvidia-cuda-runtime==$SERIES.* into $VENV (one time)" >&2
  mkdir -p "$(dirname "$VENV")"
  if [[ ! -x "$VENV_PYTHON" ]]; then
    if ! "$PYTHON" -m venv "$VENV" >&2; then
      echo "error: cannot create a virtual environment with $PYTHON; on Debian: apt-get install python3-venv" >&2
      exit 2
    fi
  fi
  "$VENV_PYTHON" -m pip install --quiet --disable-pip-version-check \
    "nvidia-cuda-nvrtc==$SERIES.*" "nvidia-cuda-runtime==$SERIES.*" >&2
  if ! dirs="$(locate)"; then
    echo "error: installed the NVRTC packages into $VENV but cannot find libnvrtc.so.13 and cuda_runtime.h under nvidia/cu13/; remove $VENV and run this again" >&2
    exit 1
  fi
fi

read -r lib inc <<<"$dirs"
echo "SHARDLINE_NVRTC_LIB_DIR=$lib"
echo "SHARDLINE_CUDA_INCLUDE_DIR=$inc"
