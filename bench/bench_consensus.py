"""The consensus panel (self-consistency) on BIG-bench arithmetic: best-of-n against one sample and the oracle.

    python bench/bench_consensus.py [--n 8] [--questions 50] [--model local] [--max-tokens 64]
                                    [--of-best local:PATH.gguf] [--top-k 4]

For the first `--questions` questions of 2-digit addition and 2-digit multiplication
(../shared/data/bigbench_arithmetic), the generator samples n answers per question (temperature 0.8, seed = the
question's index), and the exact-numeric verifier grades each against BIG-bench's target. The table gives per
task the accuracy of
  one sample         the mean over the n samples of whether each is right (a single sample's expected accuracy)
  consensus pick     the Selection's best under the built-in `consensus` panel (the most common final answer)
  at least one of n  whether any sample is right (the oracle: what a perfect judge could pick)
and, with `--of-best JUDGE`, the pick of `majority_of_best` (a direct-logprob correctness rubric on JUDGE picks
the top_k, whose answers vote) and of that rubric alone. 95% intervals: Wilson, over questions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import time
from pathlib import Path

from bestofn.backends import load_backend
from bestofn.config.panel import Panel, load_panel
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.verifiers.numeric import check
from bestofn.pipeline.generate import generate
from bestofn.pipeline.schedule import judge_all
from bestofn.ranking.aggregate import aggregate
from bestofn.records import Message

DATA = Path(os.environ.get("BESTOFN_DATA_DIR") or Path(__file__).resolve().parents[2] / "shared" / "data")
TASKS = ("2_digit_addition", "2_digit_multiplication")


def questions(task: str, k: int) -> list[dict]:
    examples = json.loads((DATA / "bigbench_arithmetic" / task / "task.json").read_text(encoding="utf-8"))["examples"]
    return examples[:k]


def wilson(hits: float, n: int) -> tuple[float, float]:
    if n == 0:
        return math.nan, math.nan
    p, z = hits / n, 1.96
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def of_best_panels(judge: str, top_k: int) -> tuple[Panel, Panel]:
    rubric = {"name": "correctness", "rubric": "correctness.v1", "model": judge, "score_method": "logprob",
              "reasoning": False}
    voting = Panel.model_validate({"name": "majority-of-best", "aggregate": "majority_of_best", "top_k": top_k,
                                   "judge": [rubric, {"name": "consensus", "kind": "consensus"}]})
    return voting, Panel.model_validate({"name": "rubric-only", "judge": [rubric]})


async def main(n: int, k: int, model: str, max_tokens: int, of_best: str | None, top_k: int) -> None:
    print(f"load average at start: {os.getloadavg()}")
    generator = load_backend(model)
    consensus = load_panel("consensus")
    panels = [("consensus pick", consensus)]
    judge_backend, judging = None, consensus
    if of_best:
        judge_backend = load_backend(of_best)
        voting, rubric = of_best_panels(of_best, top_k)
        panels += [(f"majority_of_best (top {top_k})", voting), ("rubric alone", rubric)]
        judging = voting
    rows: dict[str, dict[str, list[float]]] = {}
    started = time.perf_counter()
    for task in TASKS:
        per: dict[str, list[float]] = {"one sample": [], **{label: [] for label, _ in panels}, f"at least one of {n}": []}
        for i, example in enumerate(questions(task, k)):
            messages = [Message(role="user", content=example["input"])]
            candidates = await generate(generator, messages, n=n, temperature=0.8, max_tokens=max_tokens, seed=i)
            right = {c.id: check(c.text, {"answer": example["target"]}).criteria["exact_numeric"] for c in candidates}
            per["one sample"].append(sum(right[c.id] for c in candidates) / n)
            per[f"at least one of {n}"].append(float(any(right.values())))
            unique = [c.id for c in candidates if c.duplicate_of is None]
            # one judging for every panel: the largest panel's judges (each aggregate reads its own judges' verdicts)
            judges = build_judges(judging, lambda config: judge_backend)
            verdicts = await judge_all(judges, JudgeInput(prompt=messages, seed=i), candidates)
            for label, panel in panels:
                ranking = aggregate(panel, unique, verdicts, seed=i, texts={c.id: c.text for c in candidates}).ranking
                per[label].append(float(right[ranking[0]]) if ranking else 0.0)
        rows[task] = per
        print(f"  {task}: done ({time.perf_counter() - started:.0f} s)")
    rows["both"] = {key: rows[TASKS[0]][key] + rows[TASKS[1]][key] for key in rows[TASKS[0]]}
    print(f"\nBIG-bench arithmetic, first {k} questions per task, best-of-{n} from {generator.spec} "
          f"(temperature 0.8, max_tokens {max_tokens}); accuracy [95% Wilson]:")
    keys = list(rows["both"])
    print(f"| {'task':22} | " + " | ".join(f"{key:26}" for key in keys) + " |")
    print("|" + "---|" * (len(keys) + 1))
    for task, per in rows.items():
        cells = []
        for key in keys:
            values = per[key]
            lo, hi = wilson(sum(values), len(values))
            cells.append(f"{sum(values) / len(values):5.1%} [{lo:4.0%}, {hi:4.0%}]".ljust(26))
        print(f"| {task:22} | " + " | ".join(cells) + " |")
    print(f"\n{time.perf_counter() - started:.0f} s; load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--questions", type=int, default=50)
    parser.add_argument("--model", default="local", help="the generator (default: the embedded model)")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--of-best", default=None, help="a judge model: add majority_of_best and the rubric alone")
    parser.add_argument("--top-k", type=int, default=4)
    args = parser.parse_args()
    asyncio.run(main(args.n, args.questions, args.model, args.max_tokens, args.of_best, args.top_k))
