#!/usr/bin/env bash
# CPU engine benchmark on SmolLM2-135M-Instruct (GGUF): prefill and decode
# tokens/s of Shardline's engine and of llama.cpp (llama-cpp-python) on the
# same file and the same prompt tokens, with the same number of threads,
# measured back to back in rounds; prints the ratio. Optionally also runs the
# correctness comparison with llama.cpp (compare_llamacpp.py).
#
#   bench/engine/run.sh                 # 3 rounds, batch 16 and 32, writes bench/results/
#   bench/engine/run.sh --rounds 1 --batch 16 --no-record
#   bench/engine/run.sh --compare       # also the llama.cpp correctness comparison
#   bench/engine/run.sh --help
#
# Environment: CARGO_TARGET_DIR (default ~/.cache/shardline/target),
# SHARDLINE_LLAMACPP_VENV (default ~/.cache/shardline/llamacpp-venv; created
# and llama-cpp-python built from source there the first time, ~15 min on
# 2 cores), BENCH_THREADS (default: all cores, for both engines).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/shardline/target}"
VENV="${SHARDLINE_LLAMACPP_VENV:-$HOME/.cache/shardline/llamacpp-venv}"
LLAMA_CPP_PYTHON_VERSION="0.3.36"
THREADS="${BENCH_THREADS:-$(nproc)}"
ROUNDS=3
BATCH="16,32"
PROMPT_LEN=128
DECODE=64
RECORD=1
COMPARE=0

usage() { sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; }
while [[ $# -gt 0 ]]; do
  case "$1" in
    --rounds) ROUNDS="$2"; shift 2 ;;
    --batch) BATCH="$2"; shift 2 ;;
    --prompt-len) PROMPT_LEN="$2"; shift 2 ;;
    --decode-tokens) DECODE="$2"; shift 2 ;;
    --no-record) RECORD=0; shift ;;
    --compare) COMPARE=1; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done

GGUF="$(scripts/fetch-smollm2.sh)"

echo "== building the release examples" >&2
cargo build --release -q -p engine --example cpu_bench --example gguf_reference
BIN="$CARGO_TARGET_DIR/release/examples"

if ! "$VENV/bin/python" -c "import llama_cpp, numpy, gguf" 2>/dev/null; then
  echo "== installing llama-cpp-python $LLAMA_CPP_PYTHON_VERSION into $VENV (builds llama.cpp from source)" >&2
  python3 -m venv "$VENV"
  # A plain CPU build tuned for this machine, as llama.cpp is normally built.
  CMAKE_ARGS="-DGGML_NATIVE=ON -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_BLAS=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF" \
  CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$VENV/bin/pip" install --quiet "llama-cpp-python==$LLAMA_CPP_PYTHON_VERSION" numpy gguf
fi
PY="$VENV/bin/python"

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
LOAD_BEFORE="$(cut -d' ' -f1-3 /proc/loadavg)"
echo "== load average before: $LOAD_BEFORE; $ROUNDS rounds, $THREADS threads" >&2
for i in $(seq "$ROUNDS"); do
  echo "-- round $i: Shardline" >&2
  RAYON_NUM_THREADS="$THREADS" "$BIN/cpu_bench" "$GGUF" bench/engine/prompts.txt \
    --prompt-len "$PROMPT_LEN" --decode-tokens "$DECODE" --batch "$BATCH" > "$WORK/ours-$i.json"
  echo "-- round $i: llama.cpp" >&2
  "$PY" bench/engine/bench_llamacpp.py --gguf "$GGUF" --ours "$WORK/ours-$i.json" \
    --threads "$THREADS" > "$WORK/llama-$i.json"
  "$PY" -c "import json,sys; d=json.load(open(sys.argv[1])); print(f\"   llama.cpp: prefill {d['prefill_tokens_per_s']:.1f} tokens/s, decode {d['decode_tokens_per_s']:.1f} tokens/s\")" "$WORK/llama-$i.json" >&2
done
LOAD_AFTER="$(cut -d' ' -f1-3 /proc/loadavg)"

"$PY" - "$WORK/meta.json" "$THREADS" "$LOAD_BEFORE" "$LOAD_AFTER" <<'EOF'
import datetime, json, os, subprocess, sys
import llama_cpp
path, threads, before, after = sys.argv[1:5]
cpu = "unknown"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
dirty = subprocess.run(["git", "status", "--porcelain", "engine"], capture_output=True, text=True).stdout.strip()
json.dump({
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "cpu": cpu, "cores": os.cpu_count(), "threads": int(threads),
    "load_before": before, "load_after": after,
    "llama_cpp_python": llama_cpp.__version__,
    "shardline_git": git + (" (engine/ modified)" if dirty else ""),
    "model": "SmolLM2-135M-Instruct.Q4_1.gguf",
}, open(path, "w"))
EOF

OUT="$WORK/engine-cpu.json"
echo
"$PY" bench/engine/report.py "$OUT" "$WORK"
if [[ "$RECORD" == 1 ]]; then
  mkdir -p bench/results
  DEST="bench/results/engine-cpu-$(date -u +%Y%m%d-%H%M).json"
  cp "$OUT" "$DEST"
  echo "recorded in $DEST"
fi

if [[ "$COMPARE" == 1 ]]; then
  echo
  echo "== correctness comparison with llama.cpp" >&2
  ARGS=(--gguf "$GGUF" --engine-bin "$BIN/gguf_reference" --threads "$THREADS")
  [[ "$RECORD" == 1 ]] && ARGS+=(--out "bench/results/llamacpp-compare-$(date -u +%Y%m%d-%H%M).json")
  "$PY" bench/engine/compare_llamacpp.py "${ARGS[@]}" || echo "compare_llamacpp.py reported differences beyond tolerance (exit $?)"
fi
