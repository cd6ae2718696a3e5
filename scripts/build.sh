#!/usr/bin/env bash
# The one build of scripts/quickstart.sh and scripts/test.sh: every binary
# of the workspace, debug, into $CARGO_TARGET_DIR (default
# ~/.cache/shardline/target). Both scripts run this same command, so the
# second reuses the first's build instead of compiling the dependencies
# again with other features; the tests then compile only their own code.
# Says before it starts how long the wait is.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"

if [ ! -x "$CARGO_TARGET_DIR/debug/shardline" ]; then
  cat >&2 <<MSG
build: the first build of Shardline compiles nearly 400 crates into
       $CARGO_TARGET_DIR: about 9 minutes on an idle 2-core machine,
       two to three times as long on a busy one.
       Later runs (and scripts/test.sh) rebuild only what changed.
MSG
else
  echo "build: rebuilding what changed since the last build in $CARGO_TARGET_DIR" >&2
fi
exec cargo build --locked --workspace --bins
