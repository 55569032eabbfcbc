"""Calls, tokens and seconds of each judging method on the local model, and the cost of logprob scoring.

    python bench/bench_judging_methods.py [--n 4] [--panels default,compact,pairwise,listwise,verifier-first]
                                          [--logprob-reps 3]

Prints one row per panel (the same n sampled candidates are judged by every panel: generation happens once),
then the price of G-Eval logprob scoring on llama.cpp: the same rubric call with score_method "sampled" (the
plain instance) and "logprob" (a logits_all=True instance with top-10 logprobs), alternated. Figures, not
asserts: the machine's load changes them.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from bestofn.ranking.aggregate import aggregate
from bestofn.backends import load_backend
from bestofn.pipeline.generate import generate
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.rubric import RubricJudge
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import JudgeConfig, load_panel
from bestofn.records import Message
from bestofn.pipeline.select import judge_all

PROMPT = "Give two tips for sleeping better. Keep it short."


async def main(n: int, panels: list[str], reps: int) -> None:
    local = load_backend("local")
    messages = [Message(role="user", content=PROMPT)]
    candidates = await generate(local, messages, n=n, temperature=0.8, max_tokens=64, seed=0)
    unique = [c for c in candidates if c.duplicate_of is None]
    print(f"{len(unique)} distinct candidates of {n}; prompt: {PROMPT!r}")
    item = JudgeInput(prompt=messages, seed=0)
    header = f"{'panel':16} {'calls':>5} {'prompt tok':>10} {'compl tok':>9} {'seconds':>8} {'s/call':>7}"
    print(header + "  statuses / bias")
    for name in panels:
        panel = load_panel(name)
        meter = Meter()
        judges = build_judges(panel, lambda config: MeteredBackend(local, meter), max_tokens=256)
        started = time.perf_counter()
        verdicts = await judge_all(judges, item, candidates)
        seconds = time.perf_counter() - started
        result = aggregate(panel, [c.id for c in unique], verdicts, texts={c.id: c.text for c in candidates})
        statuses = {s: sum(v.status == s for v in verdicts) for s in ("ok", "invalid", "error", "abstain")}
        bias = result.stats.get("bias", {})
        extra = bias.get("position_consistency") or bias.get("shuffle_agreement") or bias.get("judge_agreement") or {}
        print(f"{name:16} {meter.calls:5d} {meter.prompt_tokens:10d} {meter.completion_tokens:9d} {seconds:8.1f} "
              f"{seconds / max(meter.calls, 1):7.2f}  {statuses} {extra}")

    if not reps:
        return
    print("\nlogprob scoring (one rubric call on one candidate, alternated):")
    timings: dict[str, list[float]] = {"sampled": [], "logprob": []}
    for rep in range(reps):
        for method in ("sampled", "logprob"):
            config = JudgeConfig(name="correctness", rubric="correctness.v1", score_method=method)
            judge = RubricJudge(config=config, backend=local, max_tokens=128)
            started = time.perf_counter()
            (verdict,) = await judge.judge(JudgeInput(prompt=messages, seed=100 + rep), [unique[0]])
            timings[method].append(time.perf_counter() - started)
            if method == "logprob" and rep == 0:
                print("  verdict:", verdict.status, verdict.score, verdict.details.get("logprob"))
    for method, values in timings.items():
        print(f"  {method:8} median {statistics.median(values):.2f}s  runs {[round(v, 2) for v in values]}")
    ratio = statistics.median(timings["logprob"]) / statistics.median(timings["sampled"])
    print(f"  logprob / sampled: {ratio:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--panels", default="default,compact,pairwise,listwise,verifier-first")
    parser.add_argument("--logprob-reps", type=int, default=3, help="0 skips the logprob comparison")
    args = parser.parse_args()
    asyncio.run(main(args.n, args.panels.split(","), args.logprob_reps))
