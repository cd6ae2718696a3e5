#!/usr/bin/env bash
# Builds Shardline and runs the quickstart eval job on the embedded defaults
# (SQLite store and local cache under .shardline/).
#
# Until Shardline's own engine can run a local model, the quickstart job talks
# to an OpenAI-compatible endpoint named by environment variables:
#   SHARDLINE_QUICKSTART_BASE_URL   e.g. http://localhost:8000/v1 (vLLM, SGLang,
#                                   LiteLLM proxy) or https://api.openai.com/v1
#   SHARDLINE_QUICKSTART_API_KEY    the endpoint's key (any value for vLLM)
#   SHARDLINE_QUICKSTART_MODEL      optional; the model name to ask for
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"

if [ -z "${SHARDLINE_QUICKSTART_BASE_URL:-}" ]; then
  cat >&2 <<'MSG'
error: SHARDLINE_QUICKSTART_BASE_URL is not set.
The quickstart sends its prompts to an OpenAI-compatible endpoint. Set, for example:
  export SHARDLINE_QUICKSTART_BASE_URL=http://localhost:8000/v1   # a vLLM/SGLang server
  export SHARDLINE_QUICKSTART_API_KEY=anything
or, for OpenAI itself:
  export SHARDLINE_QUICKSTART_BASE_URL=https://api.openai.com/v1
  export SHARDLINE_QUICKSTART_API_KEY=sk-...
and run this again.
MSG
  exit 2
fi
cargo build --locked --bin shardline
model_args=()
if [ -n "${SHARDLINE_QUICKSTART_MODEL:-}" ]; then
  model_args=(--model "$SHARDLINE_QUICKSTART_MODEL")
fi
exec "$CARGO_TARGET_DIR/debug/shardline" run jobs/examples/quickstart/job.toml "${model_args[@]}" "$@"
