"""Calls, tokens and seconds of each judging method on the local model, and the cost of logprob scoring.

    python bench/bench_judging_methods.py [--n 4] [--panels default,compact,pairwise,listwise,verifier-first]
                                          [--judge-model local:PATH.gguf] [--logprob-reps 3] [--logits-all]

Prints one row per panel (the same n sampled candidates are judged by every panel: generation happens once),
then, side by side in one run on `--judge-model`, one correctness.v1 verdict on each candidate by:
  sampled          reasoning, then the score (the default rubric)
  logprob          reasoning, then the score's distribution (G-Eval; today's logprob mode)
  direct-sampled   reasoning = false: the score alone
  direct-logprob   reasoning = false with score_method = "logprob": one prompt evaluation, one token
  logits-all       (--logits-all; local models only) today's logprob mode as it ran before the local backend read
                   the last position's logits: a second llama.cpp instance made with logits_all=True
Each method is timed warm, as in a run (a call with its own template on another candidate of the same prompt
comes first, so llama.cpp's cache holds the rubric and the question), `--logprob-reps` rounds in a rotated
order, and, on a local judge, cold (its KV cache emptied before each verdict). The last distinct candidate only
primes the cache. Figures, not asserts: the machine's load (printed) changes them.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from pathlib import Path
from typing import Any

from bestofn.backends import load_backend
from bestofn.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import JudgeConfig, load_panel
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.rubric import RubricJudge
from bestofn.pipeline.generate import generate
from bestofn.pipeline.schedule import judge_all
from bestofn.ranking.aggregate import aggregate
from bestofn.records import Message, Usage

PROMPT = "Give two tips for sleeping better. Keep it short."
METHODS = {  # name -> (score_method, reasoning)
    "sampled": ("sampled", True),
    "logprob": ("logprob", True),
    "direct-sampled": ("sampled", False),
    "direct-logprob": ("logprob", False),
}


class LogitsAllBackend(Backend):
    """The local backend's logprob path before it read the last position: llama-cpp-python's own `logprobs`,
    which needs a Llama made with logits_all=True (every prompt token's logits computed and copied)."""

    serial = True

    def __init__(self, path: Path) -> None:
        from bestofn.backends.local import N_CTX, _threads, llama_class

        self.spec = f"logits-all:{path.name}"
        self.llama = llama_class()(model_path=str(path), n_ctx=N_CTX, verbose=False, logits_all=True, **_threads())

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        out = []
        for i in range(params.n):
            kwargs: dict[str, Any] = dict(messages=[m.model_dump() for m in messages], temperature=params.temperature,
                                          max_tokens=params.max_tokens, seed=params.seed + i)
            if params.top_logprobs is not None:
                kwargs.update(logprobs=True, top_logprobs=params.top_logprobs)
            if params.json_schema is not None:
                kwargs["response_format"] = {"type": "json_object", "schema": params.json_schema}
            reply = self.llama.create_chat_completion(**kwargs)
            choice, usage = reply["choices"][0], reply.get("usage") or {}
            content = (choice.get("logprobs") or {}).get("content") or []
            out.append(Completion(
                text=choice["message"].get("content") or "", finish_reason=choice.get("finish_reason"),
                usage=Usage(prompt_tokens=usage.get("prompt_tokens", 0),
                            completion_tokens=usage.get("completion_tokens", 0)),
                logprobs=[TokenLogprob(token=t["token"], logprob=t["logprob"],
                                       top={x["token"]: x["logprob"] for x in t.get("top_logprobs", [])})
                          for t in content] or None))
        return out


async def panels_table(local: Backend, messages: list[Message], candidates: list, panels: list[str]) -> None:
    unique = [c for c in candidates if c.duplicate_of is None]
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
        spend = meter.spend
        print(f"{name:16} {spend.calls:5d} {spend.prompt_tokens:10d} {spend.completion_tokens:9d} {seconds:8.1f} "
              f"{seconds / max(spend.calls, 1):7.2f}  {statuses} {extra}")


def reset(backend: Backend) -> bool:
    """Empty a local model's KV cache (the next call evaluates its whole prompt); False where that cannot be done."""
    llama = getattr(backend, "llama", None) or (backend._ensure()[0] if hasattr(backend, "_ensure") else None)
    if llama is None:
        return False
    llama.reset()
    return True


async def methods_table(judge_backend: Backend, messages: list[Message], unique: list, reps: int,
                        old: Backend | None) -> None:
    methods = dict(METHODS)
    backends = {name: judge_backend for name in methods}
    if old is not None:
        methods["logits-all"], backends["logits-all"] = ("logprob", True), old
    judges = {name: RubricJudge(config=JudgeConfig(name="correctness", rubric="correctness.v1", score_method=m,
                                                   reasoning=r), backend=backends[name], max_tokens=128)
              for name, (m, r) in methods.items()}
    dummy = unique[-1]
    measured = unique[:-1] if len(unique) > 1 else unique
    runs: dict[str, dict[str, list]] = {phase: {name: [] for name in judges} for phase in ("warm", "cold")}

    async def measure(phase: str, name: str, candidate, seed: int) -> None:
        started = time.perf_counter()
        (verdict,) = await judges[name].judge(JudgeInput(prompt=messages, seed=seed), [candidate])
        runs[phase][name].append((time.perf_counter() - started, verdict))

    names = list(judges)
    for rep in range(reps):
        for name in names[rep % len(names):] + names[: rep % len(names)]:  # a rotated order each round
            judge = judges[name]
            # as in a run: the cache holds this template and question, with another candidate after them
            await judge.backend.sample(judge.prompt_for(JudgeInput(prompt=messages), dummy),  # type: ignore[union-attr]
                                       SamplingParams(max_tokens=1, temperature=0))
            for candidate in measured:
                await measure("warm", name, candidate, 100 + rep)
    cold = all(reset(b) for b in set(backends.values()))
    for rep in range(reps if cold else 0):
        for candidate in measured:
            for name in names:
                reset(backends[name])
                await measure("cold", name, candidate, 200 + rep)
    for phase, what in (("warm", "warm: the previous call judged another candidate of the same prompt and template"),
                        ("cold", "cold: an empty KV cache, the whole prompt evaluated")):
        if not runs[phase]["sampled"]:
            continue
        print(f"\none correctness.v1 verdict per candidate ({what}); {len(measured)} candidates x {reps} rounds, "
              f"judge {judge_backend.spec}:")
        print(f"{'method':15} {'median s':>8} {'mean s':>7} {'prompt tok':>10} {'compl tok':>9}  ok   scores")
        for name, done in runs[phase].items():
            seconds = [t for t, _ in done]
            k = len(done)
            ok = sum(v.status == "ok" for _, v in done)
            shown = [None if v.score is None else round(v.score, 2) for _, v in done[: len(measured)]]
            print(f"{name:15} {statistics.median(seconds):8.2f} {statistics.fmean(seconds):7.2f} "
                  f"{sum(v.usage.prompt_tokens for _, v in done) / k:10.0f} "
                  f"{sum(v.usage.completion_tokens for _, v in done) / k:9.1f}  {ok:2d}/{k}  {shown}")
        direct = statistics.median(t for t, _ in runs[phase]["direct-logprob"])
        for name in ("logprob", "logits-all"):
            if runs[phase].get(name):
                ratio = direct / statistics.median(t for t, _ in runs[phase][name])
                print(f"  direct-logprob / {name}: {ratio:.2f}x (medians)")


async def main(n: int, panels: list[str], reps: int, judge_model: str, logits_all: bool) -> None:
    print(f"load average at start: {os.getloadavg()}")
    local = load_backend("local")
    messages = [Message(role="user", content=PROMPT)]
    candidates = await generate(local, messages, n=n, temperature=0.8, max_tokens=64, seed=0)
    unique = [c for c in candidates if c.duplicate_of is None]
    print(f"{len(unique)} distinct candidates of {n}; prompt: {PROMPT!r}")
    if panels:
        await panels_table(local, messages, candidates, panels)
    if reps:
        judge_backend = load_backend(judge_model)
        if getattr(judge_backend, "engine", None) == "batched":  # logprob calls always run sequentially: all do here
            judge_backend.engine = "sequential"  # type: ignore[attr-defined]
            print("the judge runs on the local backend's sequential engine, the one logprob calls take")
        old = None
        if logits_all:
            path = getattr(judge_backend, "path", None)
            if path is None:
                raise SystemExit("--logits-all needs a local judge model")
            old = LogitsAllBackend(path)
        await methods_table(judge_backend, messages, unique, reps, old)
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=4)
    parser.add_argument("--panels", default="default,compact,pairwise,listwise,verifier-first",
                        help="panels to time on the embedded model; '' skips them")
    parser.add_argument("--judge-model", default="local", help="the judge of the per-method table")
    parser.add_argument("--logprob-reps", type=int, default=3, help="rounds of the per-method table; 0 skips it")
    parser.add_argument("--logits-all", action="store_true",
                        help="add today's logprob mode on a logits_all instance (the pre-change local path)")
    args = parser.parse_args()
    asyncio.run(main(args.n, [p for p in args.panels.split(",") if p], args.logprob_reps, args.judge_model,
                     args.logits_all))
