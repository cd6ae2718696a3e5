#!/usr/bin/env bash
# Fuzzes, each for a bounded time (docs/security.md, "Fuzzing"):
#   1. the job spec loader (TOML file and JSON submit body), the dataset
#      reader (text formats, and Parquet files valid and damaged) and the
#      planner, with the cargo-fuzz targets in fuzz/;
#   2. the coordinator's HTTP API, with schemathesis against a real
#      `shardline serve` and the OpenAPI description it serves.
# Fails on any crash, hang or panic, on any 5xx answer, and on any answer
# whose status, content type or body the OpenAPI description does not allow.
#
# scripts/test.sh runs it after building the workspace's binaries (it uses
# the debug `shardline` of $CARGO_TARGET_DIR). Skip it with
# SHARDLINE_SKIP_FUZZ=1. Run longer with SHARDLINE_FUZZ_SECS (seconds per
# fuzz target, default 45), SHARDLINE_API_FUZZ_SECS (schemathesis, default
# 150) and SHARDLINE_API_FUZZ_EXAMPLES (cases per operation, default 100).
# Tools are installed when absent: cargo-fuzz with cargo, schemathesis in a
# venv; the fuzz build, corpus and crash artifacts live under
# $HOME/.cache/shardline/, never in the clone.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${SHARDLINE_SKIP_FUZZ:-0}" = "1" ]; then
  echo "fuzz: skipped (SHARDLINE_SKIP_FUZZ=1)"
  exit 0
fi

CACHE="$HOME/.cache/shardline"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$CACHE/target}"
FUZZ_SECS="${SHARDLINE_FUZZ_SECS:-45}"
API_SECS="${SHARDLINE_API_FUZZ_SECS:-150}"
API_EXAMPLES="${SHARDLINE_API_FUZZ_EXAMPLES:-100}"
TARGETS=(spec_toml spec_json dataset parquet plan)
FUZZ_TARGET_DIR="$CACHE/fuzz-target"
LOGS="$CACHE/fuzz-logs"
mkdir -p "$LOGS"

# ---- 1. cargo-fuzz -------------------------------------------------------

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz"
  cargo install --locked --quiet cargo-fuzz
fi

# cargo-fuzz needs unstable rustc flags (sanitizer coverage): stable rustc
# allows them under RUSTC_BOOTSTRAP. AddressSanitizer when this toolchain
# ships its runtime, none otherwise. `-a`: overflow checks on.
export RUSTC_BOOTSTRAP=1
start=$SECONDS
sanitizer=address
if ! cargo fuzz build -s address -a --target-dir "$FUZZ_TARGET_DIR" >"$LOGS/build.log" 2>&1; then
  echo "fuzz: AddressSanitizer build failed (see $LOGS/build.log); building without it"
  sanitizer=none
  cargo fuzz build -s none -a --target-dir "$FUZZ_TARGET_DIR"
fi
echo "fuzz: built ${#TARGETS[@]} targets (sanitizer: $sanitizer) in $((SECONDS - start)) s"
host="$(rustc -vV | sed -n 's/^host: //p')"
bin_dir="$FUZZ_TARGET_DIR/$host/release"

failed=0
for target in "${TARGETS[@]}"; do
  corpus="$CACHE/fuzz-corpus/$target"
  artifacts="$CACHE/fuzz-artifacts/$target"
  mkdir -p "$corpus" "$artifacts"
  start=$SECONDS
  # New inputs go to the first folder (kept between local runs); the
  # committed seeds are read only.
  if "$bin_dir/$target" "$corpus" "fuzz/seeds/$target" \
      -max_total_time="$FUZZ_SECS" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$artifacts/" -print_final_stats=1 \
      >"$LOGS/$target.log" 2>&1; then
    runs="$(sed -n 's/^stat::number_of_executed_units: *//p' "$LOGS/$target.log")"
    echo "fuzz: $target: no crash in ${runs:-?} runs, $((SECONDS - start)) s"
  else
    failed=1
    echo "fuzz: $target FAILED after $((SECONDS - start)) s; the end of its log ($LOGS/$target.log):" >&2
    tail -n 40 "$LOGS/$target.log" >&2
    echo "fuzz: reproduce with: RUSTC_BOOTSTRAP=1 cargo fuzz run -s $sanitizer -a $target $artifacts/<crash file>" >&2
  fi
done
if [ "$failed" = 1 ]; then
  exit 1
fi

# ---- 2. schemathesis against `shardline serve` -----------------------------

# The version these checks were written against (its CLI flags change).
SCHEMATHESIS_VERSION=4.32.5
venv="$CACHE/schemathesis-venv"
if ! "$venv/bin/st" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  echo "fuzz: installing schemathesis $SCHEMATHESIS_VERSION into $venv"
  if ! python3 -m venv "$venv"; then
    echo "error: cannot create a virtual environment; on Debian: apt-get install python3-venv" >&2
    exit 2
  fi
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

shardline="$CARGO_TARGET_DIR/debug/shardline"
if [ ! -x "$shardline" ]; then
  echo "error: $shardline is missing; run \`cargo build --workspace --bins\` first" >&2
  exit 2
fi
work="$(mktemp -d)"
port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
admin_token="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
worker_token="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
base="http://127.0.0.1:$port"
SHARDLINE_ADMIN_TOKEN="$admin_token" SHARDLINE_WORKER_TOKEN="$worker_token" \
  "$shardline" serve --listen "127.0.0.1:$port" --home "$work/home" >"$LOGS/serve.log" 2>&1 &
serve_pid=$!
cleanup() {
  kill "$serve_pid" 2>/dev/null || true
  wait "$serve_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
for _ in $(seq 1 300); do
  if python3 -c "import urllib.request; urllib.request.urlopen('$base/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$serve_pid" 2>/dev/null; then
    echo "error: shardline serve exited; its log:" >&2
    cat "$LOGS/serve.log" >&2
    exit 1
  fi
  sleep 0.1
done

start=$SECONDS
status=0
# The admin token opens every route (worker routes take it too). Checks:
# no 5xx, every status, content type and body is one the description
# allows, and a route with a token refuses a request without one
# (ignored_auth). `timeout` only guards against a hang; --max-time bounds the run.
# One worker: with two threads, Python 3.11's ast.parse inside hypothesis
# failed ("AST constructor recursion depth mismatch"), an error of the tool.
(cd "$work" && timeout $((API_SECS + 120)) "$venv/bin/st" run "$base/openapi.json" \
  --header "Authorization: Bearer $admin_token" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,ignored_auth \
  --max-examples "$API_EXAMPLES" --max-time "$API_SECS" --workers 1 \
  --request-timeout 30 --suppress-health-check too_slow,filter_too_much \
  --generation-database none --output-sanitize true --no-color) >"$LOGS/schemathesis.log" 2>&1 || status=$?
if ! kill -0 "$serve_pid" 2>/dev/null; then
  echo "fuzz: shardline serve died during the API fuzzing; see $LOGS/serve.log" >&2
  status=1
fi
if [ "$status" != 0 ]; then
  echo "fuzz: schemathesis FAILED after $((SECONDS - start)) s; its report ($LOGS/schemathesis.log):" >&2
  tail -n 120 "$LOGS/schemathesis.log" >&2
  exit 1
fi
summary="$(grep -E '^[0-9]+ (passed|failed)|passed|Test cases' "$LOGS/schemathesis.log" | tail -n 3 | tr '\n' ' ')"
echo "fuzz: HTTP API: schemathesis found nothing in $((SECONDS - start)) s ($summary)"
