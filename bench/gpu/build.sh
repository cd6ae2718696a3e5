#!/usr/bin/env bash
# Builds, on the development machine, the release binaries bench/gpu/check.sh
# runs on the GPU machine (which has no Rust): the cuda_check and cuda_bench
# examples and the cuda_executor integration test, stripped, into
# bench/gpu/bin/ (ignored by git; carry it to the GPU machine). Prints their
# sizes and the newest glibc symbol they need.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"
BIN=bench/gpu/bin
LIMIT_MIB=60

cargo build --locked --release -p engine --example cuda_check --example cuda_bench
test_exe="$(cargo test --locked --release -p engine --test cuda_executor --no-run --message-format=json \
  | python3 -c '
import json, sys
exe = None
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("target", {}).get("name") == "cuda_executor" and m.get("executable"):
        exe = m["executable"]
print(exe or "")
')"
if [[ -z "$test_exe" ]]; then
  echo "error: cargo did not report the cuda_executor test binary" >&2
  exit 1
fi

mkdir -p "$BIN"
cp "$CARGO_TARGET_DIR/release/examples/cuda_check" "$BIN/cuda_check"
cp "$CARGO_TARGET_DIR/release/examples/cuda_bench" "$BIN/cuda_bench"
cp "$test_exe" "$BIN/cuda_executor_test"
strip "$BIN"/cuda_check "$BIN"/cuda_bench "$BIN"/cuda_executor_test

ls -l "$BIN"
total_kib="$(du -sk "$BIN" | cut -f1)"
echo "total: $((total_kib / 1024)) MiB (limit for carrying: $LIMIT_MIB MiB)"
if (( total_kib > LIMIT_MIB * 1024 )); then
  echo "error: bench/gpu/bin is larger than $LIMIT_MIB MiB" >&2
  exit 1
fi
if command -v objdump >/dev/null 2>&1; then
  newest="$(objdump -T "$BIN"/* 2>/dev/null | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)"
  echo "newest glibc symbol needed: ${newest:-unknown}"
fi
