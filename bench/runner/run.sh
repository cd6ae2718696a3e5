#!/usr/bin/env bash
# Shardline benchmark: builds the release binaries, makes sure lm-evaluation-harness and Inspect AI
# are installed in their own venv, then runs bench.py (throughput vs. the ideal, vs. lm-eval and
# Inspect at equal concurrency, peak RSS).
# Usage: bench/runner/run.sh [bench.py options]   (bench/runner/run.sh --help lists them)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"
venv="${SHARDLINE_BENCH_VENV:-$HOME/.cache/shardline/bench-venv}"

# SHARDLINE_BENCH_REV=HEAD (or any commit) benchmarks that revision instead of the working tree,
# from a `git archive` snapshot: a baseline to compare a change against, or a way to measure while
# the working tree is mid-edit.
src="$repo"
if [[ -n "${SHARDLINE_BENCH_REV:-}" ]]; then
  src="$(mktemp -d -t shardline-bench-src-XXXXXX)"
  trap 'rm -rf "$src"' EXIT
  git -C "$repo" archive "$SHARDLINE_BENCH_REV" | tar -x -C "$src"
  # git archive stamps files with the commit time; cargo would take the working tree's newer
  # artifacts as up to date. Fresh stamps and a target dir of its own (seeded once with the
  # compiled dependencies) keep snapshot and working-tree builds from reusing each other's crates.
  find "$src" -type f -exec touch {} +
  rev_target="${CARGO_TARGET_DIR}-bench-rev"
  if [[ ! -d "$rev_target/release" && -d "$CARGO_TARGET_DIR/release" ]]; then
    mkdir -p "$rev_target" && cp -a "$CARGO_TARGET_DIR/release" "$rev_target/"
  fi
  export CARGO_TARGET_DIR="$rev_target"
  echo "benchmarking $(git -C "$repo" rev-parse --short "$SHARDLINE_BENCH_REV") from $src" >&2
fi
(cd "$src" && cargo build --release -p shardline --bin shardline -p testkit --bin fake-openai)

# The peers live in one venv, each installed once; SHARDLINE_BENCH_SKIP_LM_EVAL=1 and
# SHARDLINE_BENCH_SKIP_INSPECT=1 leave one out (both: no venv at all).
new_venv() {
  if [[ ! -x "$venv/bin/pip" ]]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
  fi
}
peer_args=()
if [[ "${SHARDLINE_BENCH_SKIP_LM_EVAL:-0}" != 1 ]]; then
  if [[ ! -x "$venv/bin/lm_eval" ]]; then
    echo "installing lm-evaluation-harness into $venv (once)" >&2
    new_venv
    "$venv/bin/pip" install --quiet 'lm-eval[api]'
  fi
  peer_args+=(--lm-eval "$venv/bin/lm_eval")
fi
if [[ "${SHARDLINE_BENCH_SKIP_INSPECT:-0}" != 1 ]]; then
  # Inspect's OpenAI-compatible provider needs the openai package, which inspect-ai does not pull.
  if [[ ! -x "$venv/bin/inspect" ]] || ! "$venv/bin/python" -c 'import inspect_ai, openai' 2>/dev/null; then
    echo "installing Inspect AI into $venv (once)" >&2
    new_venv
    "$venv/bin/pip" install --quiet inspect-ai openai
  fi
  peer_args+=(--inspect "$venv/bin/inspect")
fi

python3 "$here/bench.py" \
  --shardline "$CARGO_TARGET_DIR/release/shardline" \
  --fake "$CARGO_TARGET_DIR/release/fake-openai" \
  "${peer_args[@]}" "$@"
