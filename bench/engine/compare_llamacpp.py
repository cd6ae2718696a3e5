#!/usr/bin/env python3
"""Compares Shardline's CPU engine with llama.cpp (llama-cpp-python) on a GGUF.

For each prompt: tokenization (ours vs llama.cpp's), the log-probability of
every prompt token after the first (llama.cpp with logits_all), and a greedy
continuation of --max-tokens tokens. Both sides score and continue the same
token ids (llama.cpp's), so a tokenizer difference shows up only in the
tokenization count.

Two runs:

1. The GGUF as llama.cpp runs it by default. Our engine dequantises the
   weights to f32 and computes in f32; llama.cpp multiplies the quantised
   weights (Q4_1/Q8_0) with activations quantised to 8 bits, and keeps an f16
   KV cache. Log-probabilities differ by that quantisation noise, and a
   greedy continuation may part ways where llama.cpp's top two logits are
   closer than the noise. Tolerances (defaults, flags below):
     tokenization      identical for every prompt
     prompt logprobs   max |diff| <= 0.75 nats and mean |diff| <= 0.1
     greedy            identical, or parting only at a step where
                       llama.cpp's top-1/top-2 logit margin is < 0.75 (after
                       that the continuations differ by construction)
     batch invariance  our greedy output is the same with all prompts in
                       one batch as with each prompt alone
2. The control: an all-F32 copy of the file (make_f32_gguf.py, dequantised
   by the `gguf` package) with llama.cpp's KV cache in f32. Both sides then
   do the same arithmetic up to summation order, so the tolerances are tight:
   max |diff| <= 1e-3, mean <= 1e-4, greedy identical unless the margin is
   < 0.01. This is the run that would expose a real modelling difference.

Usage (bench/engine/run.sh builds the example and finds the venv):
  compare_llamacpp.py --gguf MODEL.gguf --engine-bin PATH/gguf_reference \
      [--out bench/results/llamacpp-compare.json] [--no-control]
Needs llama-cpp-python, numpy and gguf. Exit status: 0 when every check is
within tolerance, 1 otherwise, 2 on error.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile

import numpy as np
import llama_cpp
from llama_cpp import Llama

# Plain text, chat-formatted text with special tokens, digits, code,
# punctuation, non-ASCII and odd whitespace: the pre-tokenizer's edge cases.
PROMPTS = [
    "The capital of France is",
    "Once upon a time, in a small village by the sea, there lived",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nWhat is 17 times 23?<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>user\nName three colours of the rainbow.<|im_end|>\n<|im_start|>assistant\n",
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return",
    "Prices rose 3.75% in 2023, from $1,249.99 to $1,296.86 per unit.",
    "Zürich, São Paulo and Kraków are cities; 東京 is Tokyo. Café — naïve résumé!",
    "   Leading spaces,\ttabs\tand\n\nblank lines   between   words.",
    "Q: What is the boiling point of water at sea level?\nA:",
    "1, 2, 3, 5, 8, 13, 21,",
    "The quick brown fox jumps over the lazy dog. The quick brown fox",
]


# The all-F32 control: same arithmetic on both sides up to summation order.
CONTROL_TOLERANCE = {"logprob_max": 1e-3, "logprob_mean": 1e-4, "tie_margin": 0.01}


def log_softmax(rows):
    rows = rows.astype(np.float64)
    m = rows.max(axis=-1, keepdims=True)
    return rows - m - np.log(np.exp(rows - m).sum(axis=-1, keepdims=True))


def llama_case(llm, tokens, max_tokens):
    """Prompt logprobs and greedy continuation (with per-step margins)."""
    llm.reset()
    llm.eval(tokens)
    n = len(tokens)
    lsm = log_softmax(np.array(llm.scores[:n]))
    prompt_lp = [float(lsm[i - 1, tokens[i]]) for i in range(1, n)]
    prompt_argmax = [int(x) for x in lsm.argmax(axis=-1)]
    greedy, margins = [], []
    last = np.array(llm.scores[n - 1], dtype=np.float64)
    for _ in range(max_tokens):
        top2 = np.argsort(last)[-2:]
        greedy.append(int(top2[1]))
        margins.append(float(last[top2[1]] - last[top2[0]]))
        llm.eval([greedy[-1]])
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
    return prompt_lp, prompt_argmax, greedy, margins


def git_revision():
    """HEAD, marked when the engine's sources differ from it."""
    run = lambda *a: subprocess.run(["git", *a], capture_output=True, text=True).stdout.strip()  # noqa: E731
    head = run("rev-parse", "--short", "HEAD")
    if not head:
        return None
    return head + (" (engine/ modified)" if run("status", "--porcelain", "engine") else "")


def machine():
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "loadavg": list(os.getloadavg())}


def compare(args, gguf, kv_f32, tol):
    """Runs both engines on `gguf` and checks the differences against `tol`
    (keys logprob_max, logprob_mean, tie_margin). Returns (summary, cases)."""
    llm = Llama(
        model_path=gguf,
        n_ctx=512,
        n_batch=512,
        n_threads=args.threads,
        n_threads_batch=args.threads,
        logits_all=True,
        verbose=False,
        flash_attn=False,
        # GGML_TYPE_F32; llama.cpp's default KV cache is f16.
        **({"type_k": 0, "type_v": 0} if kv_f32 else {}),
    )
    llama_tokens = [llm.tokenize(p.encode("utf-8"), add_bos=True, special=True) for p in PROMPTS]

    with tempfile.TemporaryDirectory() as tmp:
        req_path = os.path.join(tmp, "requests.json")
        with open(req_path, "w") as f:
            json.dump([{"text": p, "tokens": t} for p, t in zip(PROMPTS, llama_tokens)], f)
        proc = subprocess.run(
            [args.engine_bin, gguf, req_path, "--max-tokens", str(args.max_tokens)],
            capture_output=True,
            text=True,
        )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr)
        raise RuntimeError(f"{args.engine_bin} failed with exit status {proc.returncode}")
    ours = json.loads(proc.stdout)

    cases = []
    all_diffs = []
    ok = True
    for text, ltoks, oc in zip(PROMPTS, llama_tokens, ours["cases"]):
        lp, _, lgreedy, margins = llama_case(llm, ltoks, args.max_tokens)
        diffs = np.abs(np.array(oc["prompt_logprobs"]) - np.array(lp))
        all_diffs.extend(diffs.tolist())
        match = 0
        while match < min(len(lgreedy), len(oc["greedy"])) and lgreedy[match] == oc["greedy"][match]:
            match += 1
        parted = match < args.max_tokens
        parted_margin = margins[match] if parted and match < len(margins) else None
        greedy_ok = not parted or (parted_margin is not None and parted_margin < tol["tie_margin"])
        tok_ok = oc["our_tokens"] == ltoks
        batch_ok = oc["greedy"] == oc["greedy_alone"]
        ok &= greedy_ok and tok_ok and batch_ok
        cases.append(
            {
                "text": text,
                "tokenization_equal": tok_ok,
                "llama_tokens": ltoks,
                "our_tokens": oc["our_tokens"],
                "logprob_max_abs_diff": float(diffs.max()),
                "logprob_mean_abs_diff": float(diffs.mean()),
                "greedy_matching_prefix": match,
                "greedy_parted_at_llama_margin": parted_margin,
                "greedy_ok": greedy_ok,
                "batch_invariant": batch_ok,
                "llama_greedy": lgreedy,
                "our_greedy": oc["greedy"],
                "llama_greedy_text": llm.detokenize(lgreedy).decode("utf-8", "replace"),
            }
        )
    max_diff = float(max(all_diffs))
    mean_diff = float(np.mean(all_diffs))
    ok &= max_diff <= tol["logprob_max"] and mean_diff <= tol["logprob_mean"]
    n = len(cases)
    summary = {
        "model": os.path.basename(gguf),
        "llama_kv_cache": "f32" if kv_f32 else "f16 (default)",
        "tolerances": tol,
        "prompts": n,
        "tokenization_equal": sum(c["tokenization_equal"] for c in cases),
        "prompt_logprobs_compared": len(all_diffs),
        "logprob_max_abs_diff": max_diff,
        "logprob_mean_abs_diff": mean_diff,
        "greedy_identical": sum(c["greedy_matching_prefix"] == args.max_tokens for c in cases),
        "greedy_tokens_matching": sum(c["greedy_matching_prefix"] for c in cases),
        "greedy_tokens_total": args.max_tokens * n,
        "greedy_within_tolerance": sum(c["greedy_ok"] for c in cases),
        "batch_invariant": sum(c["batch_invariant"] for c in cases),
        "verdict": "pass" if ok else "fail",
    }
    print(f"{summary['model']}, llama.cpp KV cache {summary['llama_kv_cache']}:")
    print(f"  tokenization identical:  {summary['tokenization_equal']}/{n}")
    print(
        f"  prompt logprobs:         max |diff| {max_diff:.3g}, mean |diff| {mean_diff:.3g} "
        f"over {len(all_diffs)} tokens (tolerance {tol['logprob_max']} / {tol['logprob_mean']})"
    )
    print(
        f"  greedy {args.max_tokens} tokens:        {summary['greedy_identical']}/{n} identical, "
        f"{summary['greedy_tokens_matching']}/{summary['greedy_tokens_total']} tokens before parting"
    )
    for c in cases:
        if c["greedy_matching_prefix"] < args.max_tokens:
            m = c["greedy_parted_at_llama_margin"]
            kind = "near-tie" if c["greedy_ok"] else "NOT within the tie margin"
            print(f"    parted after {c['greedy_matching_prefix']} tokens, llama.cpp top-2 margin {m:.3f} ({kind}): {c['text'][:40]!r}")
    print(f"  batch invariance (ours): {summary['batch_invariant']}/{n}")
    print(f"  verdict: {summary['verdict']}")
    return summary, cases


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--engine-bin", required=True, help="the gguf_reference example binary")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--logprob-tol", type=float, default=0.75)
    ap.add_argument("--mean-logprob-tol", type=float, default=0.1)
    ap.add_argument("--tie-margin", type=float, default=0.75)
    ap.add_argument("--no-control", action="store_true", help="skip the all-F32 control run")
    ap.add_argument("--out", help="write the full result as JSON here")
    args = ap.parse_args()

    print(f"llama.cpp comparison ({len(PROMPTS)} prompts, llama-cpp-python {llama_cpp.__version__})")
    result = {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "versions": {
            "llama_cpp_python": llama_cpp.__version__,
            "python": platform.python_version(),
            "shardline_git": git_revision(),
        },
        "threads": args.threads,
        "max_tokens": args.max_tokens,
    }
    try:
        quant = compare(
            args,
            args.gguf,
            kv_f32=False,
            tol={"logprob_max": args.logprob_tol, "logprob_mean": args.mean_logprob_tol, "tie_margin": args.tie_margin},
        )
        result["quantised"] = {"summary": quant[0], "cases": quant[1]}
        ok = quant[0]["verdict"] == "pass"
        if not args.no_control:
            here = os.path.dirname(os.path.abspath(__file__))
            with tempfile.TemporaryDirectory() as tmp:
                f32 = os.path.join(tmp, "model-f32.gguf")
                subprocess.run(
                    [sys.executable, os.path.join(here, "make_f32_gguf.py"), args.gguf, f32], check=True
                )
                control = compare(
                    args,
                    f32,
                    kv_f32=True,
                    tol=CONTROL_TOLERANCE,
                )
            result["f32_control"] = {"summary": control[0], "cases": control[1]}
            ok &= control[0]["verdict"] == "pass"
    except (RuntimeError, subprocess.CalledProcessError, ValueError) as e:
        print(f"compare_llamacpp: {e}", file=sys.stderr)
        return 2
    result["verdict"] = "pass" if ok else "fail"
    result["machine"]["loadavg_after"] = list(os.getloadavg())
    print(f"overall verdict: {result['verdict']}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1, ensure_ascii=False)
            f.write("\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
