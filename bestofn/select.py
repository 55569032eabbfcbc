"""The pipeline: messages -> generate -> judge (panel) -> aggregate -> Selection (best, ranking, pairs).

`aselect` is the async core; `select` is its thin sync wrapper.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

from bestofn.aggregate import aggregate
from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.errors import ConfigError
from bestofn.generate import generate
from bestofn.judging import Judge, JudgeInput, build_judges
from bestofn.meter import Meter, MeteredBackend
from bestofn.pairs import make_pairs
from bestofn.panel import JudgeConfig, Panel, load_panel
from bestofn.records import Candidate, Cost, Message, Selection, Verdict, as_messages
from bestofn.sinks import PreferenceLog

MAX_N = 64
DEFAULT_MODEL = "local"
DEFAULT_MAX_TOKENS = 512
DEFAULT_JUDGE_MAX_TOKENS = 384
DEFAULT_TEMPERATURE = 0.8

#: progress(stage, done, total): stage is "generate" or "judge"
Progress = Callable[[str, int, int], None]


def resolve_panel(panel: str | Path | Panel) -> Panel:
    return panel if isinstance(panel, Panel) else load_panel(panel)


def check_n(n: int) -> int:
    if not 1 <= n <= MAX_N:
        raise ConfigError(f"n must be between 1 and {MAX_N}, got {n}")
    return n


async def judge_all(
    judges: list[Judge], item: JudgeInput, candidates: list[Candidate], progress: Progress | None = None
) -> list[Verdict]:
    """Run every judge on the unique candidates. Pointwise calls are submitted judge by judge, candidate last,
    so that a serial backend (llama.cpp) reuses the KV cache of the shared rubric-and-question prefix."""
    unique = [c for c in candidates if c.duplicate_of is None]
    jobs = []
    for judge in judges:
        if judge.pointwise:
            jobs.extend(judge.judge(item, [c]) for c in unique)
        else:
            jobs.append(judge.judge(item, unique))
    done, total = 0, len(jobs)
    if progress:
        progress("judge", 0, total)

    async def tracked(job: Any) -> list[Verdict]:
        nonlocal done
        out = await job
        done += 1
        if progress:
            progress("judge", done, total)
        return out

    results = await asyncio.gather(*(tracked(j) for j in jobs))
    return [v for verdicts in results for v in verdicts]


async def aselect(
    prompt: str | list[Message] | list[dict[str, Any]],
    *,
    n: int = 4,
    model: str | Backend = DEFAULT_MODEL,
    judge_model: str | Backend | None = None,
    panel: str | Path | Panel = "default",
    base_url: str | None = None,
    seed: int = 0,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    judge_max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS,
    temperature: float = DEFAULT_TEMPERATURE,
    reference: str | None = None,
    constraints: dict[str, Any] | None = None,
    strategy: str = "best-worst",
    pair_margin: float | None = None,
    log: str | Path | None = None,
    progress: Progress | None = None,
) -> Selection:
    """Sample n answers, judge them with a panel, and return the Selection (best, ranking, pairs, cost)."""
    messages = as_messages(prompt)
    check_n(n)
    the_panel = resolve_panel(panel)
    meter = Meter()
    generator = MeteredBackend(load_backend(model, base_url), meter)

    def backend_for(config: JudgeConfig) -> Backend:
        spec = judge_model or config.model or DEFAULT_MODEL
        return MeteredBackend(load_backend(spec, config.base_url or base_url), meter)

    judges = build_judges(the_panel, backend_for, max_tokens=judge_max_tokens)

    started = time.perf_counter()
    if progress:
        progress("generate", 0, n)
    candidates = await generate(
        generator, messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
    )
    if progress:
        progress("generate", n, n)
    generated = time.perf_counter()

    item = JudgeInput(prompt=messages, seed=seed, reference=reference, constraints=constraints or {})
    verdicts = await judge_all(judges, item, candidates, progress)
    judged = time.perf_counter()

    unique_ids = [c.id for c in candidates if c.duplicate_of is None]
    result = aggregate(the_panel, unique_ids, verdicts, seed=seed)
    pairs = make_pairs(
        prompt=messages,
        candidates=candidates,
        verdicts=verdicts,
        scores=result.scores,
        ranking=result.ranking,
        strategy=strategy,
        margin=the_panel.pair_margin if pair_margin is None else pair_margin,
        generator=generator.spec,
        panel=the_panel.name,
        seed=seed,
    )
    best = next((c for c in candidates if result.ranking and c.id == result.ranking[0]), None)
    selection = Selection(
        prompt=messages,
        panel=the_panel.name,
        candidates=candidates,
        verdicts=verdicts,
        scores=result.scores,
        ranking=result.ranking,
        best=best,
        pairs=pairs,
        cost=Cost(
            calls=meter.calls,
            prompt_tokens=meter.prompt_tokens,
            completion_tokens=meter.completion_tokens,
            cache_hits=meter.cache_hits,
            seconds=round(judged - started, 3),
            generation_seconds=round(generated - started, 3),
            judging_seconds=round(judged - generated, 3),
        ),
        stats=result.stats,
    )
    if log is not None:
        PreferenceLog(log).write(pairs)
    return selection


def select(prompt: str | list[Message] | list[dict[str, Any]], **options: Any) -> Selection:
    """Sync wrapper of `aselect` (same keyword arguments)."""
    return asyncio.run(aselect(prompt, **options))
