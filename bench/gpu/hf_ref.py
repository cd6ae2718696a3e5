#!/usr/bin/env python3
"""Transformers side of the GPU check (run by bench/gpu/check.sh).

Subcommands:
  make KIND DIR            random-initialised model of a named shape, weights
                           rounded to bf16 and saved with save_pretrained
  reference DIR OUT.json   transformers outputs for the Rust side to match:
                           last-position logits (fp32), greedy continuations
                           (fp32 and bf16) and continuation log-likelihoods
  hf-bench DIR BENCH.json OUT.json
                           transformers generate throughput on the workload
                           cuda_bench ran (its lengths), at several batch sizes
  report DIR               results-<gpu>.md from the JSON files in DIR
  libdirs                  folders holding CUDA libraries from pip packages

Needs PyPI torch and transformers (no network: models are built locally).
"""

import argparse
import glob
import json
import math
import os
import sys
import time

SHAPES = {
    # Llama 3 8B's attention and vocabulary, 4 layers.
    "llama3-small": dict(
        arch="llama", hidden_size=2048, intermediate_size=8192, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=4, vocab_size=128256,
        rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=131072,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=False),
    # Qwen2.5-0.5B with 4 layers: q/k/v biases, head 64, 7 query heads per KV head, tied.
    "qwen25-small": dict(
        arch="qwen2", hidden_size=896, intermediate_size=4864, num_hidden_layers=4,
        num_attention_heads=14, num_key_value_heads=2, vocab_size=151936,
        rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=32768,
        tie_word_embeddings=True),
    # Qwen3-0.6B with 4 layers: q/k norms, head 128, tied.
    "qwen3-small": dict(
        arch="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=4,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960,
        tie_word_embeddings=True),
    "qwen3-0.6b": dict(
        arch="qwen3", hidden_size=1024, intermediate_size=3072, num_hidden_layers=28,
        num_attention_heads=16, num_key_value_heads=8, head_dim=128, vocab_size=151936,
        rope_theta=1000000.0, rms_norm_eps=1e-6, max_position_embeddings=40960,
        tie_word_embeddings=True),
    "llama3-8b": dict(
        arch="llama", hidden_size=4096, intermediate_size=14336, num_hidden_layers=32,
        num_attention_heads=32, num_key_value_heads=8, vocab_size=128256,
        rope_theta=500000.0, rms_norm_eps=1e-5, max_position_embeddings=131072,
        rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                      "high_freq_factor": 4.0, "original_max_position_embeddings": 8192},
        tie_word_embeddings=False),
}


def device():
    import torch
    return "cuda" if torch.cuda.is_available() else "cpu"


def load(model_dir, dtype):
    import torch
    from transformers import AutoModelForCausalLM
    try:
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
    except TypeError:
        m = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=dtype)
    return m.to(device()).eval()


def cmd_make(args):
    import torch
    from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config, Qwen3Config
    if os.path.exists(os.path.join(args.dir, "config.json")):
        print(f"{args.dir}: already there")
        return
    shape = dict(SHAPES[args.kind])
    if args.layers:
        shape["num_hidden_layers"] = args.layers
    arch = shape.pop("arch")
    cls = {"llama": LlamaConfig, "qwen2": Qwen2Config, "qwen3": Qwen3Config}[arch]
    # A wider init than transformers' 0.02 gives peaked next-token
    # distributions, so greedy comparisons are not decided by near-ties.
    cfg = cls(bos_token_id=1, eos_token_id=2, initializer_range=args.init_std, **shape)
    torch.manual_seed(args.seed)
    t = time.time()
    with torch.device(device()):
        model = AutoModelForCausalLM.from_config(cfg).to(torch.bfloat16)
    # bf16 on disk: transformers in fp32 then computes with exactly the
    # weights the engine holds, so differences come from the computation.
    model.save_pretrained(args.dir, safe_serialization=True, max_shard_size="4GB")
    n = sum(p.numel() for p in model.parameters())
    print(f"{args.kind}: {n / 1e9:.2f}B parameters saved to {args.dir} in {time.time() - t:.0f}s")


def greedy(model, prompt, n):
    import torch
    ids = torch.tensor([prompt], device=device())
    out = []
    past = None
    with torch.no_grad():
        cur = ids
        for _ in range(n):
            r = model(input_ids=cur, past_key_values=past, use_cache=True)
            past = r.past_key_values
            nxt = int(torch.argmax(r.logits[0, -1].float()))
            out.append(nxt)
            cur = torch.tensor([[nxt]], device=device())
    return out


def loglik(model, context, continuation):
    import torch
    full = context + continuation
    ids = torch.tensor([full[:-1]], device=device())
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()
    lp = torch.log_softmax(logits, dim=-1)
    start = len(context) - 1
    return float(sum(lp[start + j, t] for j, t in enumerate(continuation)))


def cmd_reference(args):
    import torch
    g = torch.Generator().manual_seed(args.seed)
    cfg = json.load(open(os.path.join(args.dir, "config.json")))
    vocab = cfg["vocab_size"]

    def rand_ids(n):
        return torch.randint(3, vocab, (n,), generator=g).tolist()

    prompts = [rand_ids(int(torch.randint(16, 300, (1,), generator=g))) for _ in range(args.prompts)]
    ll = []
    for _ in range(args.loglik):
        ctx = rand_ids(int(torch.randint(20, 200, (1,), generator=g)))
        cont = rand_ids(int(torch.randint(1, 10, (1,), generator=g)))
        ll.append({"context": ctx, "continuation": cont})

    t = time.time()
    model = load(args.dir, torch.float32)
    logits_file = os.path.basename(args.out) + ".last_logits.f32"
    with open(os.path.join(os.path.dirname(os.path.abspath(args.out)), logits_file), "wb") as f:
        with torch.no_grad():
            for p in prompts:
                row = model(input_ids=torch.tensor([p], device=device())).logits[0, -1].float().cpu()
                f.write(row.numpy().astype("<f4").tobytes())
    greedy32 = [greedy(model, p, args.new_tokens) for p in prompts]
    for r in ll:
        r["logprob_fp32"] = loglik(model, r["context"], r["continuation"])
    model = model.to(torch.bfloat16)
    greedy16 = [greedy(model, p, args.new_tokens) for p in prompts]
    for r in ll:
        r["logprob_bf16"] = loglik(model, r["context"], r["continuation"])
    del model
    json.dump({
        "name": os.path.basename(os.path.normpath(args.dir)),
        "vocab_size": vocab,
        "new_tokens": args.new_tokens,
        "prompts": prompts,
        "last_logits_file": logits_file,
        "greedy_fp32": greedy32,
        "greedy_bf16": greedy16,
        "loglik": ll,
    }, open(args.out, "w"))
    print(f"reference for {args.dir}: {len(prompts)} prompts, {len(ll)} log-likelihoods in {time.time() - t:.0f}s")


def cmd_hf_bench(args):
    import torch
    bench = json.load(open(args.bench))
    ins, outs = bench["workload"]["input_lens"], bench["workload"]["output_lens"]
    cfg = json.load(open(os.path.join(args.dir, "config.json")))
    vocab = cfg["vocab_size"]
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in ins]
    model = load(args.dir, torch.bfloat16)
    results = []
    deadline = time.time() + args.time_budget
    for b in [int(x) for x in args.batch_sizes.split(",")]:
        if time.time() > deadline:
            results.append({"batch": b, "skipped": "time budget"})
            continue
        b = min(b, len(prompts))
        batch_prompts = prompts[:b]
        new = min(max(outs[:b]), args.max_new)
        width = max(len(p) for p in batch_prompts)
        # Left padding, as generate expects for decoder-only models.
        ids = torch.zeros((b, width), dtype=torch.long)
        mask = torch.zeros((b, width), dtype=torch.long)
        for i, p in enumerate(batch_prompts):
            ids[i, width - len(p):] = torch.tensor(p)
            mask[i, width - len(p):] = 1
        useful = sum(min(o, new) for o in outs[:b])
        sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
        try:
            sync()
            t = time.time()
            with torch.no_grad():
                model.generate(input_ids=ids.to(device()), attention_mask=mask.to(device()),
                               max_new_tokens=new, min_new_tokens=new, do_sample=False,
                               pad_token_id=0)
            sync()
            secs = time.time() - t
            results.append({"batch": b, "new_tokens": new, "seconds": secs,
                            "useful_output_tokens": useful, "output_tok_s": useful / secs,
                            "generated_tok_s": b * new / secs})
            print(f"transformers generate, batch {b}: {useful / secs:.0f} useful output tok/s "
                  f"({b * new / secs:.0f} generated tok/s, {new} new tokens, {secs:.1f}s)")
        except torch.cuda.OutOfMemoryError:
            results.append({"batch": b, "skipped": "out of memory"})
            print(f"transformers generate, batch {b}: out of memory")
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    done = [r for r in results if "output_tok_s" in r]
    best = max(done, key=lambda r: r["output_tok_s"]) if done else None
    json.dump({"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
               "transformers": __import__("transformers").__version__,
               "torch": torch.__version__, "runs": results, "best": best,
               "note": f"first B sequences of the workload, output capped at {args.max_new} tokens, "
                       "EOS suppressed; tok/s counts each sequence's requested tokens up to the cap"},
              open(args.out, "w"), indent=1)


def fmt(x, spec=".0f"):
    return "n/a" if x is None else format(x, spec)


def cmd_report(args):
    rows = []
    gpu = None
    checks = sorted(glob.glob(os.path.join(args.dir, "check-*.json")))
    lines = []
    for path in checks:
        c = json.load(open(path))
        gpu = gpu or c.get("device")
        lv = c.get("logits_vs_hf_fp32", {})
        g32 = c.get("greedy_vs_hf_fp32", {})
        g16 = c.get("greedy_vs_hf_bf16", {})
        ll = c.get("loglik_vs_hf_fp32", {})
        cpu = c.get("cpu", {})
        tf = c.get("teacher_forced_greedy_vs_hf_fp32", {})
        n = c.get("prompts")
        lines.append(
            f"| {c.get('model')} | {fmt(lv.get('max_abs_diff'), '.4f')} (max logit {fmt(lv.get('max_abs_logit'), '.1f')}) | "
            f"{fmt(lv.get('argmax_agree'), 'd')}/{n} | {fmt(g32.get('identical'), 'd')}/{n} | {fmt(tf.get('all_tokens_argmax'), 'd')}/{n} | {fmt(g16.get('identical'), 'd')}/{n} | "
            f"{c.get('hf_bf16_vs_hf_fp32_greedy_identical')}/{n} | "
            f"{fmt(ll.get('max_abs_diff'), '.4f')} ({fmt(ll.get('max_abs_diff_per_token'), '.4f')}/tok) | "
            f"{fmt(cpu.get('logits_cuda_vs_cpu_max_abs_diff'), '.4f')} | {fmt(cpu.get('greedy_cuda_vs_cpu_identical'), 'd')}/{n} | "
            f"{fmt(cpu.get('logits_cpu_vs_hf_fp32_max_abs_diff'), '.5f')} |")
    bench_lines = []
    for path in sorted(glob.glob(os.path.join(args.dir, "bench-*.json"))):
        if path.endswith("-hf.json"):
            continue
        b = json.load(open(path))
        gpu = gpu or b.get("device")
        hf_path = path[:-5] + "-hf.json"
        hf = json.load(open(hf_path)) if os.path.exists(hf_path) else {}
        best = (hf.get("best") or {})
        ours = b["generate"]["output_tok_s"]
        ratio = ours / best["output_tok_s"] if best.get("output_tok_s") else None
        name = os.path.basename(path)[len("bench-"):-len(".json")]
        ep = b.get("engine_path", {})
        bench_lines.append(
            f"| {name} | {ours:.0f} | {fmt(ep.get('output_tok_s'))} | {fmt(best.get('output_tok_s'))} (batch {best.get('batch', 'n/a')}) | "
            f"{fmt(ratio, '.1f')}x | {100 * b['generate']['fraction_of_roofline']:.0f}% | "
            f"{b['decode_step']['median_ms']:.2f} ms / {b['decode_step']['memory_bound_ms']:.2f} ms = {b['decode_step']['ratio_to_bound']:.2f}x | "
            f"{b['loglikelihood']['requests_per_s']:.0f} req/s, {b['loglikelihood']['input_tok_s']:.0f} tok/s | "
            f"{fmt(ep.get('loglikelihood_requests_per_s'))} req/s |")
    gpu = gpu or "unknown GPU"
    md = [f"# GPU check and benchmark on {gpu}", "",
          "Written by `bench/gpu/check.sh report` from the JSON files beside it.", ""]
    if lines:
        md += ["## Correctness against transformers (random-init models, weights rounded to bf16)", "",
               "| model | CUDA logits max abs diff vs fp32 | argmax agree | CUDA greedy (32 tok) = fp32 | teacher-forced 32 tok all argmax | = bf16 | (transformers bf16 = fp32) | CUDA loglik max abs diff vs fp32 | CUDA vs CPU logits | CUDA = CPU greedy | CPU logits vs fp32 |",
               "|---|---|---|---|---|---|---|---|---|---|---|"] + lines + [""]
    if bench_lines:
        md += ["## Throughput (nano-vllm shape: 256 seqs, in/out uniform 100-1024, EOS ignored)", "",
               "| model | ours, output tok/s (device sampling) | ours via LlmEngine (host sampling) | transformers generate, best | ours / transformers | fraction of roofline | decode step @256 vs memory bound | log-likelihood (MC, device scoring) | log-likelihood via LlmEngine |",
               "|---|---|---|---|---|---|---|---|---|"] + bench_lines + [""]
    out = os.path.join(args.dir, "results-" + gpu.replace(" ", "_").replace("/", "_") + ".md")
    open(out, "w").write("\n".join(md))
    print("\n".join(md))
    print(f"wrote {out}")


def cmd_libdirs(_args):
    dirs = []
    try:
        import nvidia
        for root in nvidia.__path__:
            dirs += sorted(glob.glob(os.path.join(root, "*", "lib")))
    except ImportError:
        pass
    print(":".join(d for d in dirs if os.path.isdir(d)))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make")
    m.add_argument("kind", choices=sorted(SHAPES))
    m.add_argument("dir")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--layers", type=int, default=0, help="override the number of layers")
    m.add_argument("--init-std", type=float, default=0.02, help="initializer_range")
    r = sub.add_parser("reference")
    r.add_argument("dir")
    r.add_argument("out")
    r.add_argument("--prompts", type=int, default=16)
    r.add_argument("--loglik", type=int, default=24)
    r.add_argument("--new-tokens", type=int, default=32)
    r.add_argument("--seed", type=int, default=0)
    h = sub.add_parser("hf-bench")
    h.add_argument("dir")
    h.add_argument("bench")
    h.add_argument("out")
    h.add_argument("--batch-sizes", default="32,64,128,256")
    h.add_argument("--max-new", type=int, default=256)
    h.add_argument("--time-budget", type=float, default=150.0)
    rep = sub.add_parser("report")
    rep.add_argument("dir")
    sub.add_parser("libdirs")
    args = p.parse_args()
    {"make": cmd_make, "reference": cmd_reference, "hf-bench": cmd_hf_bench,
     "report": cmd_report, "libdirs": cmd_libdirs}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
