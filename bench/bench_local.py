"""The embedded model's two engines side by side, in one run: batched (bestofn.backends.local_batch) and sequential.

1. Generation: `-n 4` samples of "Why is the sky blue?" (temperature 0.8, `--max-tokens`), tokens per second.
2. Judging: the default panel's 16 judge calls of a best-of-4 (`judge_all` on the four sequential samples, the
   pipeline's own order and judges, no call cache), seconds; every verdict's status, and whether the two
   engines' scores agree.
3. With `--run`: `bestofn run "Why is the sky blue?" -n 4 --no-cache` in a child process per engine, seconds
   (model load included).

Both engines use the one loaded model; each measurement alternates the engines (`--repeats` rounds, the order
flipped every round) so that load from other processes hits both alike, and reports the median of wall seconds
and of process CPU seconds (CPU time is what the work costs when other processes share the cores). The machine's
load average is printed before and after. BESTOFN_LOCAL_THREADS sets the threads of both.

    python bench/bench_local.py [--max-tokens 128] [--repeats 2] [--run]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bestofn.backends.base import SamplingParams  # noqa: E402
from bestofn.backends.local import LocalBackend  # noqa: E402
from bestofn.config.panel import load_panel  # noqa: E402
from bestofn.judging import JudgeInput, build_judges  # noqa: E402
from bestofn.pipeline.generate import mark_duplicates, to_candidate  # noqa: E402
from bestofn.pipeline.schedule import judge_all  # noqa: E402
from bestofn.records import Message  # noqa: E402

ENGINES = ("sequential", "batched")
PROMPT = "Why is the sky blue?"


def backend(engine: str) -> LocalBackend:
    b = LocalBackend()
    b.engine = engine
    return b


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def alternate(repeats: int, measure) -> dict[str, list]:
    """measure(engine) -> (result, wall, cpu), for each engine, `repeats` rounds, the order flipped each round."""
    runs: dict[str, list] = {e: [] for e in ENGINES}
    for r in range(repeats):
        for engine in ENGINES if r % 2 == 0 else ENGINES[::-1]:
            runs[engine].append(measure(engine))
    return runs


def medians(runs: list) -> tuple[float, float]:
    return statistics.median(w for _, w, _ in runs), statistics.median(c for _, _, c in runs)


def generation(n: int, max_tokens: int, repeats: int) -> dict:
    messages = [Message(role="user", content=PROMPT)]
    params = SamplingParams(n=n, temperature=0.8, max_tokens=max_tokens, seed=0)
    runs = alternate(repeats, lambda e: timed(lambda: asyncio.run(backend(e).sample(messages, params))))
    out = {}
    for engine, rs in runs.items():
        tokens = sum(c.usage.completion_tokens for c in rs[0][0])
        wall, cpu = medians(rs)
        out[engine] = {"tokens": tokens, "wall": wall, "cpu": cpu, "tps": tokens / wall, "tpcpu": tokens / cpu,
                       "texts": [c.text for c in rs[0][0]], "finish": [c.finish_reason for c in rs[0][0]]}
    return out


def judging(samples: list, repeats: int) -> dict:
    messages = [Message(role="user", content=PROMPT)]
    params = SamplingParams(n=len(samples), temperature=0.8, max_tokens=512, seed=0)
    candidates = mark_duplicates([to_candidate(backend("sequential"), i, c, params) for i, c in enumerate(samples)])
    item = JudgeInput(prompt=messages, seed=0)
    panel = load_panel("default")

    def measure(engine: str):
        b = backend(engine)
        judges = build_judges(panel, lambda config: b)
        return timed(lambda: asyncio.run(judge_all(judges, item, candidates)))

    out = {}
    for engine, rs in alternate(repeats, measure).items():
        wall, cpu = medians(rs)
        verdicts = rs[0][0]
        out[engine] = {"calls": len(verdicts), "wall": wall, "cpu": cpu,
                       "status": sorted({v.status for v in verdicts}),
                       "scores": [(v.judge, v.candidate_ids, v.score) for v in verdicts]}
    return out


def full_run(repeats: int) -> dict:
    def measure(engine: str):
        env = {**os.environ, "BESTOFN_LOCAL_ENGINE": engine}
        cmd = [sys.executable, "-m", "bestofn", "run", PROMPT, "-n", "4", "--no-cache"]
        before, wall = os.times(), time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        after = os.times()
        cpu = after.children_user + after.children_system - before.children_user - before.children_system
        return None, time.perf_counter() - wall, cpu

    return {e: dict(zip(("wall", "cpu"), medians(rs))) for e, rs in alternate(repeats, measure).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--run", action="store_true", help="also time `bestofn run -n 4` per engine (child processes)")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); "
          f"BESTOFN_LOCAL_THREADS={os.environ.get('BESTOFN_LOCAL_THREADS', '(default)')}")
    backend("batched")._ensure()  # load the model outside the timings
    asyncio.run(backend("batched").sample([Message(role="user", content="hi")], SamplingParams(max_tokens=2)))

    gen = generation(args.n, args.max_tokens, args.repeats)
    s, b = gen["sequential"], gen["batched"]
    same = sum(x == y for x, y in zip(s["texts"], b["texts"]))
    print(f"\ngeneration, n={args.n}, max_tokens={args.max_tokens}, temperature 0.8 (median of {args.repeats})")
    print(f"{'engine':<11} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'cpu s':>7} {'tok/cpu-s':>9}  finish")
    for name, r in gen.items():
        print(f"{name:<11} {r['tokens']:>6} {r['wall']:>7.2f} {r['tps']:>7.1f} {r['cpu']:>7.2f} {r['tpcpu']:>9.1f}  "
              f"{','.join(r['finish'])}")
    print(f"batched/sequential tokens/s: {b['tps'] / s['tps']:.2f}x wall, {b['tpcpu'] / s['tpcpu']:.2f}x cpu "
          f"(goal >= 2x); texts identical for the same seed: {same}/{args.n}")

    texts = asyncio.run(backend("sequential").sample(
        [Message(role="user", content=PROMPT)], SamplingParams(n=4, temperature=0.8, max_tokens=512, seed=0)))
    judged = judging(texts, args.repeats)
    s, b = judged["sequential"], judged["batched"]
    agree = sum(x == y for x, y in zip(s["scores"], b["scores"]))
    print(f"\njudging: the default panel on 4 candidates, {s['calls']} verdicts (median of {args.repeats})")
    print(f"{'engine':<11} {'wall s':>7} {'cpu s':>7}  statuses")
    for name, r in judged.items():
        print(f"{name:<11} {r['wall']:>7.2f} {r['cpu']:>7.2f}  {','.join(r['status'])}")
    print(f"sequential/batched seconds: {s['wall'] / b['wall']:.2f}x wall, {s['cpu'] / b['cpu']:.2f}x cpu "
          f"(goal >= 2x); verdict scores identical: {agree}/{len(s['scores'])}")

    if args.run:
        runs = full_run(args.repeats)
        print(f"\n`bestofn run {PROMPT!r} -n 4 --no-cache` (child process, model load included)")
        for name, r in runs.items():
            print(f"{name:<11} {r['wall']:>7.2f} s wall {r['cpu']:>7.2f} s cpu")
        print(f"sequential/batched: {runs['sequential']['wall'] / runs['batched']['wall']:.2f}x wall "
              f"(goal: batched <= 15 s on an idle 2-core machine)")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
