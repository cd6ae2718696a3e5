#!/usr/bin/env bash
# The CUDA path's check and benchmark, on the GPU machine (CUDA 13.0 driver,
# PyTorch + transformers, no Rust, no network). The Rust side comes
# prebuilt in bench/gpu/bin (bench/gpu/build.sh on the development machine).
#
#   bench/gpu/check.sh [STAGE...]
#
# Stages (default: all of them, in this order):
#   tests          the CUDA integration tests (CUDA vs CPU, flash vs paged
#                  attention, device scoring and sampling) on the GPU
#   correct        Llama-3, Qwen2.5 and Qwen3 shapes (4 layers, random
#                  weights): logits, greedy continuations and log-likelihoods
#                  against transformers fp32; CUDA against CPU
#   bench-qwen3    nano-vllm workload on Qwen3-0.6B (random weights), ours vs
#                  transformers generate; decode roofline; MC log-likelihood
#   bench-llama8b  the same on a Llama-3-8B shape
#   report         results-<gpu>.md from the JSON files
#
# Results go to $OUT when set (the device tool's output folder), else to
# bench/results/. Models are built under $SHARDLINE_GPU_WORK (default
# /tmp/shardline-gpu) and the large ones removed after their stage.
set -euo pipefail
cd "$(dirname "$0")/../.."
# A failing stage stops the run (pipes into tee keep the exit status).

RESULTS="${OUT:-bench/results}"
WORK="${SHARDLINE_GPU_WORK:-/tmp/shardline-gpu}"
BIN="bench/gpu/bin"
PY="${PYTHON:-python3}"
HF="bench/gpu/hf_ref.py"
mkdir -p "$RESULTS" "$WORK"

stages=("$@")
if [[ ${#stages[@]} -eq 0 ]]; then
  stages=(tests correct bench-qwen3 bench-llama8b report)
fi

need_bin() {
  for b in "$@"; do
    if [[ ! -x "$BIN/$b" ]]; then
      echo "error: $BIN/$b is missing; run bench/gpu/build.sh on the development machine and carry bench/gpu/bin" >&2
      exit 2
    fi
  done
}

# CUDA libraries for the Rust binaries, found by the engine itself (no
# LD_LIBRARY_PATH, which would change what PyTorch loads): the CUDA 13.0
# toolkit first (its NVRTC emits PTX the 580 driver accepts), then the
# pip wheels PyTorch brought (cuBLAS).
pip_dirs="$("$PY" "$HF" libdirs 2>/dev/null || true)"
export SHARDLINE_CUDA_LIB_DIR="${SHARDLINE_CUDA_LIB_DIR:+$SHARDLINE_CUDA_LIB_DIR:}/usr/local/cuda/lib64:/usr/local/cuda/targets/x86_64-linux/lib${pip_dirs:+:$pip_dirs}"

log() { echo "== $(date +%H:%M:%S) $*"; }

gpu_info() {
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RESULTS/gpu.txt" 2>&1 || true
    cat "$RESULTS/gpu.txt"
  fi
}

stage_tests() {
  need_bin cuda_executor_test
  log "CUDA integration tests"
  SHARDLINE_REQUIRE_GPU=1 "$BIN/cuda_executor_test" --test-threads=1 --nocapture 2>&1 | tee "$RESULTS/tests.log"
}

stage_correct() {
  need_bin cuda_check
  for kind in llama3-small qwen25-small qwen3-small; do
    log "correctness: $kind"
    "$PY" "$HF" make "$kind" "$WORK/$kind"
    "$PY" "$HF" reference "$WORK/$kind" "$WORK/ref-$kind.json"
    "$BIN/cuda_check" --model "$WORK/$kind" --reference "$WORK/ref-$kind.json" \
      --out "$RESULTS/check-$kind.json" 2>&1 | tee "$RESULTS/check-$kind.log"
  done
}

bench_one() {
  local kind="$1" batches="$2"
  need_bin cuda_bench
  log "benchmark: $kind"
  "$PY" "$HF" make "$kind" "$WORK/$kind"
  "$BIN/cuda_bench" --model "$WORK/$kind" --out "$RESULTS/bench-$kind.json" \
    ${SHARDLINE_BENCH_ENGINE_PATH:+--engine-path} 2>&1 | tee "$RESULTS/bench-$kind.log"
  log "transformers baseline: $kind"
  "$PY" "$HF" hf-bench "$WORK/$kind" "$RESULTS/bench-$kind.json" "$RESULTS/bench-$kind-hf.json" \
    --batch-sizes "$batches" 2>&1 | tee "$RESULTS/bench-$kind-hf.log"
  if [[ -z "${SHARDLINE_GPU_KEEP:-}" ]]; then rm -rf "${WORK:?}/$kind"; fi
}

gpu_info
for s in "${stages[@]}"; do
  case "$s" in
    tests) stage_tests ;;
    correct) stage_correct ;;
    bench-qwen3) bench_one qwen3-0.6b "64,128,256" ;;
    bench-llama8b) bench_one llama3-8b "32,64,128" ;;
    report) "$PY" "$HF" report "$RESULTS" ;;
    *) echo "error: unknown stage $s (tests, correct, bench-qwen3, bench-llama8b, report)" >&2; exit 2 ;;
  esac
done
log "done; results in $RESULTS"
