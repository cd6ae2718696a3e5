#!/usr/bin/env python3
"""Shardline benchmark driver: throughput against the fake server, two peers on the same dataset
at the same concurrency (lm-evaluation-harness and Inspect AI), and peak RSS of `shardline run` on
large datasets. Standard library only: the peers run as their own command-line tools.

Started by bench/runner/run.sh, which builds the binaries and the peers' venv first. Every file
it writes lives in one temporary folder (removed at the end unless --keep).
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

PROMPT = "Question: What is {a} plus {b}?"
# The same prompt as a minijinja (Shardline) and a Jinja2 (lm-eval) template; Inspect's task
# formats PROMPT itself with str.format.
TEMPLATE = PROMPT.replace("{a}", "{{ a }}").replace("{b}", "{{ b }}")
SYSTEM_LOAD = "/proc/loadavg"
# Inspect's generic OpenAI-compatible provider: `openai-api/<service>/<model>` reads
# <SERVICE>_BASE_URL and <SERVICE>_API_KEY.
INSPECT_SERVICE = "fake"
INSPECT_MODEL = f"openai-api/{INSPECT_SERVICE}/fake-model"


# ---------------------------------------------------------------- fake server


class FakeServer:
    """One `fake-openai` process; a fresh one per measurement so its counters start at zero."""

    def __init__(self, binary, latency_ms):
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--latency-ms", str(latency_ms), "--no-record"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            self.stop()
            sys.exit(f"fake-openai did not start (first line: {line!r})")
        self.base_url = line.removeprefix("listening on ").rstrip("/")  # …/v1
        self.root = self.base_url.removesuffix("/v1")

    def stats(self):
        with urllib.request.urlopen(self.root + "/_fake/stats", timeout=5) as r:
            return json.load(r)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Watch(threading.Thread):
    """Polls the fake server's counters: their last values, and (for a fake too old to time the
    window itself) the inference phase as the server saw it, from the first chat request received
    to the moment `expected` answers had been sent. The fake's own clock is used when it has one,
    so the polling can be slow and cost the machine little."""

    def __init__(self, server, expected, interval=0.2):
        super().__init__(daemon=True)
        self.server, self.expected, self.interval = server, expected, interval
        self.first = self.last = None
        self.final = {}
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                s = self.server.stats()
            except OSError:
                time.sleep(self.interval)
                continue
            now = time.monotonic()
            if self.first is None and s["chat"] > 0:
                self.first = now
            if self.last is None and s["ok"] >= self.expected:
                self.last = now
            self.final = s
            time.sleep(self.interval)

    def finish(self):
        self.done.set()
        self.join()
        try:
            self.final = self.server.stats()
        except OSError:
            pass
        return self


# ---------------------------------------------------------------- data


def fake_answer(prompt):
    """The fake model's greedy reply (testkit/src/model.rs: default_answer)."""
    digest = hashlib.sha256(prompt.encode() + b"\x1f" + b"greedy" + b"\x1f").hexdigest()
    return f"answer-{digest[:8]} (fake reply)"


def write_dataset(path, rows, with_answers=True):
    """Even rows carry the fake model's own reply as target, odd rows a wrong one, so exact match
    is 0.5 in both tools when they send the same prompt: a check that they ran the same thing."""
    with open(path, "w") as f:
        for i in range(rows):
            a, b = i, i % 97
            prompt = PROMPT.format(a=a, b=b)
            if with_answers and i % 2 == 0:
                answer = fake_answer(prompt)
            else:
                answer = str(a + b)
            f.write(json.dumps({"id": f"q{i}", "a": a, "b": b, "answer": answer}) + "\n")


def write_job(path, dataset, base_url, concurrency, backend="openai", name="bench"):
    model = f'base_url = "{base_url}"\n' if backend == "openai" else ""
    with open(path, "w") as f:
        f.write(
            f"""name = "{name}"

[model]
backend = "{backend}"
model = "fake-model"
{model}concurrency = {concurrency}
max_retries = 3
timeout_secs = 60

[dataset]
path = "{dataset}"
id_field = "id"

[task]
kind = "generate"
prompt = "{TEMPLATE}"
target = "{{{{ answer }}}}"

[task.generation]
max_tokens = 32
temperature = 0.0
stop = ["\\n\\n"]

[[metrics]]
type = "exact_match"
normalize = ["strip"]

[sharding]
shard_size = 100
"""
        )


def write_lm_eval_task(folder, dataset):
    """A generate_until task over the same JSONL, read locally through HF `datasets` json."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "shardline_bench.yaml"), "w") as f:
        f.write(
            f"""task: shardline_bench
dataset_path: json
dataset_kwargs:
  data_files:
    test: {dataset}
test_split: test
output_type: generate_until
doc_to_text: "{TEMPLATE}"
doc_to_target: "{{{{answer}}}}"
generation_kwargs:
  until: ["\\n\\n"]
  max_gen_toks: 32
  do_sample: false
  temperature: 0.0
metric_list:
  - metric: exact_match
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""
        )


def write_inspect_task(path, dataset):
    """An Inspect task over the same JSONL: the same prompt as one user message, generate(), and
    an exact match of the stripped reply against `answer` (Inspect's match also trims punctuation
    at both ends of both strings, which changes nothing on this dataset)."""
    with open(path, "w") as f:
        f.write(
            f"""from inspect_ai import Task, task
from inspect_ai.dataset import Sample, json_dataset
from inspect_ai.model import GenerateConfig
from inspect_ai.scorer import match
from inspect_ai.solver import generate

PROMPT = {PROMPT!r}


def record_to_sample(record):
    return Sample(
        id=record["id"],
        input=PROMPT.format(a=record["a"], b=record["b"]),
        target=record["answer"],
    )


@task
def shardline_bench():
    return Task(
        dataset=json_dataset({dataset!r}, record_to_sample),
        solver=generate(),
        scorer=match(location="exact", ignore_case=False),
        config=GenerateConfig(max_tokens=32, temperature=0.0, stop_seqs=["\\n\\n"]),
    )
"""
        )


# ---------------------------------------------------------------- processes


def run_measured(cmd, env=None, log=None, cwd=None):
    """Runs `cmd`, returning (exit code, wall seconds, peak RSS in MB, CPU seconds) — RSS and CPU
    (user + system) from wait4's rusage of that child (and any children it waited for)."""
    start = time.monotonic()
    out = open(log, "w") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if log:
        out.close()
    cpu = usage.ru_utime + usage.ru_stime
    return proc.returncode, wall, usage.ru_maxrss / 1024, cpu  # Linux reports KiB


def shardline_run(args, work, tag, rows, latency_ms, concurrency, backend="openai"):
    """Dataset + job + one `shardline run` in a fresh home. Returns a result dict."""
    folder = os.path.join(work, tag)
    os.makedirs(folder)
    dataset = os.path.join(folder, "data.jsonl")
    write_dataset(dataset, rows)
    server = FakeServer(args.fake, latency_ms) if backend == "openai" else None
    job = os.path.join(folder, "job.toml")
    write_job(job, dataset, server.base_url if server else "", concurrency, backend)
    cmd = [args.shardline, "run", job, "--home", os.path.join(folder, "home"), "--no-progress"]
    cmd += args.run_flag
    watch = Watch(server, rows) if server else None
    if watch:
        watch.start()
    log = os.path.join(folder, "shardline.log")
    try:
        code, wall, rss, cpu = run_measured(cmd, log=log)
    finally:
        if watch:
            watch.finish()
        if server:
            server.stop()
    result = {"rows": rows, "exit": code, "wall": wall, "cpu": cpu, "rss_mb": rss, "log": log}
    if watch:
        result.update(server_window(watch, rows, latency_ms))
    metrics = os.path.join(folder, "home", "results", "bench", "metrics.json")
    if os.path.exists(metrics):
        with open(metrics) as f:
            metrics = json.load(f).get("metrics", [])
        result["exact_match"] = next(
            (m.get("mean") for m in metrics if m.get("name") == "exact_match"), None)
    if code != 0 and backend == "openai":
        print(f"  shardline run exited {code}; last lines of {log}:")
        print("".join(open(log).readlines()[-10:]))
    if not args.keep:
        # The 1M-row results and cache are hundreds of MB: free them before the next run.
        shutil.rmtree(os.path.join(folder, "home"), ignore_errors=True)
    return result


def server_window(watch, rows, latency_ms):
    s = watch.final
    out = {"requests": s.get("chat", 0), "ok": s.get("ok", 0), "max_in_flight": s.get("max_in_flight")}
    window = None
    if s.get("first_inference_us") is not None and s.get("last_answer_us") is not None:
        # The server's own clock: from the first inference request received to the last answer
        # sent, to the microsecond (the polling below sees it only to within its interval).
        window = (s["last_answer_us"] - s["first_inference_us"]) / 1e6
    elif watch.first is not None and watch.last is not None:
        window = watch.last - watch.first
    if window is not None:
        out["window"] = window
        out["rate"] = rows / window if window > 0 else float("nan")
    answered = s.get("chat", 0) + s.get("completions", 0)
    if s.get("inference_us") and answered:
        # What the server itself took per answer: the latency plus the timer's millisecond ticks
        # and its own work. A client without any overhead would see exactly this.
        out["service_ms"] = s["inference_us"] / answered / 1000
    return out


def ideal_rate(rows, concurrency, latency_ms):
    """The best rate a runner can reach on `rows` requests: with `concurrency` always in flight,
    the busiest connection answers ceil(rows / concurrency) requests one after the other."""
    return rows / (math.ceil(rows / concurrency) * latency_ms / 1000)


def lm_eval_run(args, work, rows, latency_ms, concurrency):
    folder = os.path.join(work, "lm-eval")
    os.makedirs(folder)
    dataset = os.path.join(folder, "data.jsonl")
    write_dataset(dataset, rows)
    write_lm_eval_task(os.path.join(folder, "tasks"), dataset)
    server = FakeServer(args.fake, latency_ms)
    model_args = ",".join(
        [
            "model=fake-model",
            f"base_url={server.base_url}/chat/completions",
            f"num_concurrent={concurrency}",
            "max_retries=3",
            "tokenized_requests=False",
        ]
    )
    out_dir = os.path.join(folder, "out")
    cmd = [
        args.lm_eval,
        "--model", "local-chat-completions",
        "--model_args", model_args,
        "--tasks", "shardline_bench",
        "--include_path", os.path.join(folder, "tasks"),
        "--apply_chat_template",
        "--limit", str(rows),
        "--output_path", out_dir,
    ]
    env = dict(os.environ)
    # A dummy key (the fake server needs none) and no reaching out to the Hugging Face hub.
    env.update(OPENAI_API_KEY="dummy", HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1",
               HF_DATASETS_CACHE=os.path.join(folder, "hf-cache"), TOKENIZERS_PARALLELISM="false")
    watch = Watch(server, rows)
    watch.start()
    log = os.path.join(folder, "lm_eval.log")
    try:
        code, wall, rss, cpu = run_measured(cmd, env=env, log=log)
    finally:
        watch.finish()
        server.stop()
    result = {"rows": rows, "exit": code, "wall": wall, "cpu": cpu, "rss_mb": rss, "log": log}
    result.update(server_window(watch, rows, latency_ms))
    result["exact_match"] = lm_eval_score(out_dir)
    if code != 0:
        print(f"  lm_eval exited {code}; last lines of {log}:")
        print("".join(open(log).readlines()[-15:]))
    return result


def lm_eval_score(out_dir):
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith("results") and name.endswith(".json"):
                with open(os.path.join(root, name)) as f:
                    task = json.load(f).get("results", {}).get("shardline_bench", {})
                return next((v for k, v in task.items() if k.startswith("exact_match,")), None)
    return None


def inspect_run(args, work, rows, latency_ms, concurrency):
    folder = os.path.join(work, "inspect")
    os.makedirs(folder)
    dataset = os.path.join(folder, "data.jsonl")
    write_dataset(dataset, rows)
    task_file = os.path.join(folder, "shardline_bench.py")
    write_inspect_task(task_file, dataset)
    # The inspect CLI reads the first .env it finds from its working directory upwards: an empty
    # one here keeps a stray file in a parent folder from changing the run.
    open(os.path.join(folder, ".env"), "w").close()
    server = FakeServer(args.fake, latency_ms)
    log_dir = os.path.join(folder, "logs")
    cmd = [
        # Relative to the working directory: inspect takes a task file path as a glob.
        args.inspect, "eval", os.path.basename(task_file),
        "--model", INSPECT_MODEL,
        # Static concurrency equal to Shardline's (an explicit --max-connections turns off
        # Inspect's adaptive 10..100 connections), and as many samples in flight (its default).
        "--max-connections", str(concurrency),
        "--max-samples", str(concurrency),
        # Shardline's job: max_retries = 3, timeout_secs = 60.
        "--max-retries", "3",
        "--timeout", "60",
        "--log-dir", log_dir,
        "--display", "plain",
    ]
    # Only this run's settings: no INSPECT_* defaults from the caller's environment, a dummy key
    # (the fake server needs none), and Inspect's traces and sample buffers kept in the folder.
    env = {k: v for k, v in os.environ.items() if not k.startswith("INSPECT_")}
    prefix = INSPECT_SERVICE.upper()
    env.update({f"{prefix}_BASE_URL": server.base_url, f"{prefix}_API_KEY": "dummy",
                "XDG_DATA_HOME": os.path.join(folder, "xdg-data"),
                "XDG_CACHE_HOME": os.path.join(folder, "xdg-cache"),
                "HF_HUB_OFFLINE": "1"})
    watch = Watch(server, rows)
    watch.start()
    log = os.path.join(folder, "inspect.log")
    try:
        code, wall, rss, cpu = run_measured(cmd, env=env, log=log, cwd=folder)
    finally:
        watch.finish()
        server.stop()
    result = {"rows": rows, "exit": code, "wall": wall, "cpu": cpu, "rss_mb": rss, "log": log}
    result.update(server_window(watch, rows, latency_ms))
    result["exact_match"] = inspect_score(args.inspect, log_dir, env, folder)
    if code != 0:
        print(f"  inspect eval exited {code}; last lines of {log}:")
        print("".join(open(log).readlines()[-15:]))
    return result


def inspect_score(inspect, log_dir, env, cwd):
    """The match scorer's accuracy from the run's log header (`inspect log dump --header-only`
    reads the .eval log, a format of Inspect's own)."""
    if not os.path.isdir(log_dir):
        return None
    logs = sorted(n for n in os.listdir(log_dir) if n.endswith((".eval", ".json")))
    if not logs:
        return None
    cmd = [inspect, "log", "dump", "--header-only", os.path.join(log_dir, logs[-1])]
    try:
        dump = subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
        header = json.loads(dump.stdout)
    except (subprocess.TimeoutExpired, ValueError) as err:
        print(f"  inspect log dump failed: {err}")
        return None
    if header.get("status") != "success":
        print(f"  inspect log status: {header.get('status')}")
    for score in (header.get("results") or {}).get("scores", []):
        if score.get("scorer") == "match":
            return score.get("metrics", {}).get("accuracy", {}).get("value")
    return None


# ---------------------------------------------------------------- report


def fmt(x, spec=".0f"):
    return "-" if x is None else format(x, spec)


def served_ideal(r, concurrency):
    """The ideal rate at the latency the server actually took (`service_ms`), if it said."""
    if not r.get("service_ms"):
        return None
    return ideal_rate(r["rows"], concurrency, r["service_ms"])


def describe(name, r, ideal, concurrency=None):
    rate = r.get("rate")
    e2e = r["rows"] / r["wall"] if r["wall"] > 0 else None
    served = served_ideal(r, concurrency) if concurrency else None
    print(
        f"  {name:<10} rows={r['rows']:<7} exit={r['exit']:<3} wall={r['wall']:6.2f}s "
        f"cpu={r['cpu']:.1f}s "
        f"inference={fmt(r.get('window'), '.2f')}s rate={fmt(rate)} req/s "
        + (f"(ideal {ideal:.0f}, {fmt(rate / ideal if rate else None, '.3f')}) " if ideal else "")
        + (f"(server took {r['service_ms']:.2f} ms per answer: ideal {served:.0f}, "
           f"{fmt(rate / served if rate else None, '.3f')}) " if served else "")
        + f"end-to-end={fmt(e2e)} req/s requests={r.get('requests')} ok={r.get('ok')} "
        f"max_in_flight={r.get('max_in_flight')} "
        f"peak_rss={r['rss_mb']:.0f} MB exact_match={fmt(r.get('exact_match'), '.3f')}"
    )


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--shardline", required=True)
    p.add_argument("--fake", required=True)
    p.add_argument("--lm-eval", help="lm_eval executable; the comparison is skipped without it")
    p.add_argument("--inspect", help="Inspect AI's `inspect` executable (from a venv with "
                                     "inspect-ai and openai); the comparison is skipped without it")
    p.add_argument("--rows", type=int, default=20000, help="throughput dataset size")
    p.add_argument("--latency-ms", type=int, default=50)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--rss-rows", type=int, default=1_000_000)
    p.add_argument("--rss-probe-rows", type=int, default=100_000,
                   help="measured first; its rate decides whether --rss-rows fits the budget")
    p.add_argument("--rss-budget-s", type=float, default=600,
                   help="largest projected time for the --rss-rows run; else 300k rows are run")
    p.add_argument("--skip-throughput", action="store_true")
    p.add_argument("--skip-rss", action="store_true")
    p.add_argument("--run-flag", action="append", default=[],
                   help="extra flag for `shardline run`, e.g. --run-flag=--shards-per-worker=4")
    p.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = p.parse_args()

    work = tempfile.mkdtemp(prefix="shardline-bench-")
    print(f"work folder: {work}")
    with open(SYSTEM_LOAD) as f:
        print(f"load average before: {f.read().split()[:3]} on {os.cpu_count()} cores")
    asymptotic = args.concurrency / (args.latency_ms / 1000)
    ideal = ideal_rate(args.rows, args.concurrency, args.latency_ms)
    summary = {}
    try:
        if not args.skip_throughput:
            print(f"\n== throughput: {args.rows} rows, latency {args.latency_ms} ms, "
                  f"concurrency {args.concurrency}, ideal {ideal:.0f} req/s "
                  f"(ceil(rows / concurrency) latencies; {asymptotic:.0f} for endless rows)")
            sl = shardline_run(args, work, "throughput", args.rows, args.latency_ms, args.concurrency)
            describe("shardline", sl, ideal, args.concurrency)
            summary["shardline"] = sl
            if args.lm_eval:
                lm = lm_eval_run(args, work, args.rows, args.latency_ms, args.concurrency)
                describe("lm-eval", lm, ideal, args.concurrency)
                summary["lm-eval"] = lm
            if args.inspect:
                ins = inspect_run(args, work, args.rows, args.latency_ms, args.concurrency)
                describe("inspect", ins, ideal, args.concurrency)
                summary["inspect"] = ins
        if not args.skip_rss:
            print("\n== peak RSS of `shardline run` (fake server, 0 ms latency)")
            probe = shardline_run(args, work, "rss-probe", args.rss_probe_rows, 0, args.concurrency)
            describe("probe", probe, None)
            summary["rss-probe"] = probe
            projected = probe["wall"] * args.rss_rows / args.rss_probe_rows
            size = args.rss_rows if projected <= args.rss_budget_s else 300_000
            if size != args.rss_rows:
                print(f"  {args.rss_rows} rows projected at {projected:.0f}s > budget "
                      f"{args.rss_budget_s:.0f}s: running {size} rows instead")
            big = shardline_run(args, work, "rss-big", size, 0, args.concurrency)
            describe("big", big, None)
            summary["rss-big"] = big
            plan = shardline_run(args, work, "rss-plan", args.rss_rows, 0, args.concurrency,
                                 backend="none")
            print(f"  planning only (backend none, {args.rss_rows} rows, exits {plan['exit']} "
                  f"as nothing is cached): wall={plan['wall']:.1f}s peak_rss={plan['rss_mb']:.0f} MB")
            summary["rss-plan"] = plan
        report(summary, ideal, args.concurrency)
    finally:
        if args.keep:
            print(f"\nkept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


PEERS = ("lm-eval", "inspect")
# Shardline's inference-window rate as a fraction of the ideal (issue 20).
TARGET_OF_IDEAL = 0.95


def report(s, ideal, concurrency):
    print("\n== summary")
    rows = []
    sl = s.get("shardline")
    if sl and sl.get("rate"):
        share = sl["rate"] / ideal
        verdict = "met" if share >= TARGET_OF_IDEAL else "NOT met"
        rows.append(("shardline req/s (inference window)", f"{sl['rate']:.0f}",
                     f"{share:.3f} of ideal {ideal:.0f} at concurrency {concurrency} "
                     f"(target >= {TARGET_OF_IDEAL}: {verdict})"))
        served = served_ideal(sl, concurrency)
        if served:
            share = sl["rate"] / served
            verdict = "met" if share >= TARGET_OF_IDEAL else "NOT met"
            rows.append(("shardline req/s (inference window)", f"{sl['rate']:.0f}",
                         f"{share:.3f} of ideal {served:.0f} at the {sl['service_ms']:.2f} ms "
                         f"the server took per answer (target >= {TARGET_OF_IDEAL}: {verdict})"))
        rows.append(("shardline req/s (whole run)", f"{sl['rows'] / sl['wall']:.0f}",
                     f"{sl['rows'] / sl['wall'] / ideal:.3f} of ideal"))
    # A peer that failed has no whole-run figure worth comparing.
    peers = {n: s[n] for n in PEERS if s.get(n) and s[n]["exit"] == 0}
    for name, peer in peers.items():
        if peer.get("rate"):
            served = served_ideal(peer, concurrency)
            rows.append((f"{name} req/s (inference window)", f"{peer['rate']:.0f}",
                         f"{peer['rate'] / ideal:.3f} of ideal"
                         + (f", {peer['rate'] / served:.3f} at the server's "
                            f"{peer['service_ms']:.2f} ms" if served else "")))
        rows.append((f"{name} req/s (whole run)", f"{peer['rows'] / peer['wall']:.0f}",
                     f"{peer['rows'] / peer['wall'] / ideal:.3f} of ideal"))
    for name, peer in peers.items():
        if not sl:
            continue
        # Same rows on both sides, so the rate ratio of the whole runs is the wall-time ratio.
        if sl.get("rate") and peer.get("rate"):
            rows.append((f"shardline / {name} (inference window)",
                         f"{sl['rate'] / peer['rate']:.2f}x", ""))
        rows.append((f"shardline / {name} (whole run)", f"{peer['wall'] / sl['wall']:.2f}x", ""))
    scored = [(n, s[n].get("exact_match")) for n in ("shardline",) + PEERS if s.get(n)]
    if sl and len(scored) > 1:
        # write_dataset: the even rows' targets are the fake model's reply.
        expected = (sl["rows"] + 1) // 2 / sl["rows"]
        agree = all(v is not None and abs(v - expected) < 1e-9 for _, v in scored)
        rows.append((f"exact_match (expected {expected:.3f} in every tool)",
                     "agree" if agree else "DIFFER",
                     ", ".join(f"{n} {fmt(v, '.3f')}" for n, v in scored)))
    for key in ("rss-probe", "rss-big"):
        r = s.get(key)
        if r:
            rows.append((f"peak RSS, run, {r['rows']} rows", f"{r['rss_mb']:.0f} MB",
                         f"target < 300 MB; exit {r['exit']}, {r['wall']:.0f}s"))
    if s.get("rss-plan"):
        r = s["rss-plan"]
        rows.append((f"peak RSS, planning only, {r['rows']} rows", f"{r['rss_mb']:.0f} MB",
                     "backend none"))
    width = max((len(r[0]) for r in rows), default=0)
    for name, value, note in rows:
        print(f"  {name:<{width}}  {value:>9}  {note}")
    with open(SYSTEM_LOAD) as f:
        print(f"  load average after: {f.read().split()[:3]}")


if __name__ == "__main__":
    main()
