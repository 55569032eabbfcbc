"""Seconds per pooled-logprob pairwise decision (both orders, one token each) on LLMBar pairs, no call cache.

    python bench/bench_pairwise_logprob.py --judge-model local:PATH.gguf [--gold DIR] [--n 20] [--panel NAME]

PATH is the open judge (`python bench/open_judge.py` prints it). Each decision is one PairwiseJudge.match on a
gold pair: the order with A shown first, then the one with B first, sharing the question's prefix in llama.cpp's
cache. A warm-up decision (model load) is not counted. Prints per decision the seconds and prompt tokens, then
the median, mean and 90th percentile, the accuracy on these pairs (ties half), the threads llama.cpp used and
the load average before and after: the machine is shared, and its load moves every figure. The CPU seconds
the process spent per decision move less with the load: with one llama.cpp thread they approximate the wall
time the decision takes on one idle core.
The accuracy on all 100 LLMBar Natural pairs comes from `bestofn ab` itself (README, "An open judge").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path

from bestofn.apps.ab.gold import load_gold
from bestofn.backends import load_backend
from bestofn.config.panel import load_panel
from bestofn.judging import JudgeInput, build_judges
from bestofn.records import Candidate, Message, text_id

GOLD = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "llmbar" / "LLMBar" / "Natural"


async def main(args: argparse.Namespace) -> None:
    backend = load_backend(args.judge_model)
    (judge,) = build_judges(load_panel(args.panel), lambda config: backend)
    items = load_gold(args.gold).limited(args.n + 1, args.seed).items[: args.n + 1]

    async def decide(item) -> tuple[float, int, float, float]:
        a, b = (Candidate(id=text_id(t), index=i, text=t, model="gold")
                for i, t in enumerate((item.response_a, item.response_b)))
        started, cpu = time.perf_counter(), time.process_time()
        verdict = await judge.match(JudgeInput(prompt=[Message(role="user", content=item.prompt)]), a, b)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        winner = verdict.details.get("winner") if verdict.status == "ok" else None
        credit = 0.5 if winner is None else float((winner == a.id) == (item.label == "a"))
        return seconds, verdict.usage.prompt_tokens, credit, cpu

    await decide(items[0])  # warm-up: loads the model
    load_before = os.getloadavg()
    rows = []
    for item in items[1:]:
        rows.append(await decide(item))
        print(f"{rows[-1][0]:6.2f} s ({rows[-1][3]:5.2f} s of CPU)  {rows[-1][1]:5d} prompt tokens  "
              f"credit {rows[-1][2]}", flush=True)
    load_after = os.getloadavg()
    seconds = sorted(r[0] for r in rows)
    print(f"{args.panel} on {args.judge_model}: {len(rows)} decisions (both orders each)")
    print(f"seconds per decision: median {statistics.median(seconds):.2f}, mean {statistics.fmean(seconds):.2f}, "
          f"p90 {seconds[int(0.9 * (len(seconds) - 1))]:.2f}; CPU seconds per decision (this process, all its "
          f"threads): median {statistics.median(r[3] for r in rows):.2f}")
    print(f"prompt tokens per decision: mean {statistics.fmean(r[1] for r in rows):.0f}; "
          f"accuracy here (ties half) {statistics.fmean(r[2] for r in rows):.0%}")
    print(f"threads: BESTOFN_LOCAL_THREADS={os.environ.get('BESTOFN_LOCAL_THREADS', 'unset (half the cores)')}, "
          f"cores {os.cpu_count()}; load average before {load_before[0]:.2f}, after {load_after[0]:.2f}")


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--judge-model", required=True)
    ap.add_argument("--gold", type=Path, default=GOLD)
    ap.add_argument("--n", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--panel", default="pairwise-logprob")
    asyncio.run(main(ap.parse_args()))
