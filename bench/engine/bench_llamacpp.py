#!/usr/bin/env python3
"""llama.cpp (llama-cpp-python) throughput on the prompts our cpu_bench used.

Reads the JSON that engine/examples/cpu_bench printed (prompt token ids,
prompt length, decode length) and measures llama.cpp the same way:

  prefill  each prompt evaluated from an empty KV cache, one at a time
           (n_batch 512, so one llama_decode per prompt); tokens/s over all
  decode   after the first prompt, decode_tokens single-token steps with
           greedy argmax; tokens/s = steps / their time

Prints one JSON object on stdout. Usage:
  bench_llamacpp.py --gguf MODEL.gguf --ours OURS.json [--threads N]
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--ours", required=True, help="cpu_bench's JSON output")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    args = ap.parse_args()
    with open(args.ours) as f:
        ours = json.load(f)
    prompts = ours["prompts"]
    n_prefill = ours["prefill_prompts"]
    decode_tokens = ours["decode_tokens"]
    n_ctx = max(512, ours["prompt_len"] + decode_tokens + 16)

    t0 = time.perf_counter()
    llm = Llama(
        model_path=args.gguf,
        n_ctx=n_ctx,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=False,
        verbose=False,
    )
    load_seconds = time.perf_counter() - t0
    n_vocab = llm.n_vocab()

    def last_argmax():
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,))
        return int(logits.argmax())

    # Warm-up, as ours does.
    llm.reset()
    llm.eval(prompts[0])
    for _ in range(4):
        llm.eval([last_argmax()])

    prefill_seconds = []
    for p in prompts[:n_prefill]:
        llm.reset()
        t = time.perf_counter()
        llm.eval(p)
        prefill_seconds.append(time.perf_counter() - t)

    llm.reset()
    llm.eval(prompts[0])
    tok = last_argmax()
    t = time.perf_counter()
    for _ in range(decode_tokens):
        llm.eval([tok])
        tok = last_argmax()
    decode_seconds = time.perf_counter() - t

    json.dump(
        {
            "llama_cpp_python": llama_cpp.__version__,
            "threads": args.threads,
            "load_seconds": load_seconds,
            "prefill_tokens_per_s": sum(len(p) for p in prompts[:n_prefill]) / sum(prefill_seconds),
            "prefill_seconds": prefill_seconds,
            "decode_tokens_per_s": decode_tokens / decode_seconds,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
