#!/usr/bin/env python3
"""Summarises bench/engine/run.sh's measurements: the best of each side's
rounds (the least disturbed by other processes on a shared machine), the
ratio ours / llama.cpp, and every round for reference.

Usage: report.py OUT.json ROUNDS_DIR   (ROUNDS_DIR holds ours-N.json,
llama-N.json and meta.json written by run.sh). Prints a markdown table
and writes the full record to OUT.json.
"""

import glob
import json
import os
import sys


def load_all(pattern):
    out = []
    for path in sorted(glob.glob(pattern)):
        with open(path) as f:
            out.append(json.load(f))
    return out


def main():
    out_path, rounds_dir = sys.argv[1:3]
    with open(os.path.join(rounds_dir, "meta.json")) as f:
        meta = json.load(f)
    ours = load_all(os.path.join(rounds_dir, "ours-*.json"))
    llama = load_all(os.path.join(rounds_dir, "llama-*.json"))
    if not ours:
        sys.exit("report: no measurement of our engine")

    best = lambda runs, key: max(r[key] for r in runs) if runs else None  # noqa: E731
    o_pre, o_dec = best(ours, "prefill_tokens_per_s"), best(ours, "decode_tokens_per_s")
    l_pre, l_dec = best(llama, "prefill_tokens_per_s"), best(llama, "decode_tokens_per_s")
    batched = {}
    for r in ours:
        for b in r["batched"]:
            cur = batched.get(b["batch"])
            if cur is None or b["decode_tokens_per_s"] > cur["decode_tokens_per_s"]:
                batched[b["batch"]] = b

    def ratio(a, b):
        return f"{a / b:.2f}x" if a and b else "n/a"

    def fmt(v):
        return f"{v:.1f}" if v else "n/a"

    p = ours[0]
    lines = [
        f"SmolLM2-135M-Instruct Q4_1 GGUF, {meta['threads']} threads, {meta['cpu']} ({meta['cores']} cores)",
        f"prompts of {p['prompt_len']} tokens, {p['decode_tokens']} decode steps, best of {len(ours)} rounds; "
        f"load average {meta['load_before']} before, {meta['load_after']} after",
        "",
        "| measure | Shardline (f32) | llama.cpp (Q4_1) | ratio |",
        "| --- | ---: | ---: | ---: |",
        f"| prefill tokens/s (1 sequence) | {fmt(o_pre)} | {fmt(l_pre)} | {ratio(o_pre, l_pre)} |",
        f"| decode tokens/s (1 sequence) | {fmt(o_dec)} | {fmt(l_dec)} | {ratio(o_dec, l_dec)} |",
    ]
    for b, f in sorted(batched.items()):
        lines.append(
            f"| decode tokens/s ({b} sequences; llama.cpp: 1) | {fmt(f['decode_tokens_per_s'])} "
            f"| {fmt(l_dec)} | {ratio(f['decode_tokens_per_s'], l_dec)} |"
        )
    print("\n".join(lines))
    record = {
        "meta": meta,
        "summary": {
            "ours_prefill_tokens_per_s": o_pre,
            "ours_decode_tokens_per_s": o_dec,
            "ours_batched_decode_tokens_per_s": {str(b): f["decode_tokens_per_s"] for b, f in batched.items()},
            "llama_prefill_tokens_per_s": l_pre,
            "llama_decode_tokens_per_s": l_dec,
            "prefill_ratio": o_pre / l_pre if l_pre else None,
            "decode_ratio": o_dec / l_dec if l_dec else None,
        },
        "rounds": {
            "ours": [{k: v for k, v in r.items() if k != "prompts"} for r in ours],
            "llama_cpp": llama,
        },
        "table_markdown": "\n".join(lines),
    }
    with open(out_path, "w") as f:
        json.dump(record, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
