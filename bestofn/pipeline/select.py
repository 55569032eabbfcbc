"""The pipeline: messages -> generate -> judge (panel) -> aggregate -> Selection (best, ranking, pairs).

`aselect` is the async core; `select` is its thin sync wrapper.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache, cached, resolve_cache
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import JudgeConfig, Panel, load_panel
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.pipeline.early_stop import sample_in_waves
from bestofn.pipeline.generate import generate
from bestofn.pipeline.schedule import Progress, generate_and_judge, judge_all
from bestofn.ranking.aggregate import aggregate
from bestofn.ranking.pairs import make_pairs
from bestofn.records import Cost, Message, Selection, as_messages
from bestofn.sinks.log import PreferenceLog
from bestofn.sync import run_sync

MAX_N = 64
DEFAULT_MODEL = "local"
DEFAULT_MAX_TOKENS = 512
DEFAULT_TEMPERATURE = 0.8


def resolve_panel(panel: str | Path | Panel) -> Panel:
    return panel if isinstance(panel, Panel) else load_panel(panel)


def check_n(n: int) -> int:
    if not 1 <= n <= MAX_N:
        raise ConfigError(f"n must be between 1 and {MAX_N}, got {n}")
    return n


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
    judge_max_tokens: int | None = None,
    temperature: float = DEFAULT_TEMPERATURE,
    reference: str | None = None,
    constraints: dict[str, Any] | None = None,
    strategy: str = "best-worst",
    pair_margin: float | None = None,
    log: str | Path | None = None,
    progress: Progress | None = None,
    cache: Cache | str | Path | bool | None = None,
    accept_threshold: float | None = None,
    wave_size: int | None = None,
) -> Selection:
    """Sample n answers, judge them with a panel, and return the Selection (best, ranking, pairs, cost).
    With `accept_threshold`, sample in waves of `wave_size` and stop once one clears it (bestofn.pipeline.early_stop)."""
    messages = as_messages(prompt)
    check_n(n)
    the_panel = resolve_panel(panel)
    meter = Meter()
    the_cache = resolve_cache(cache)  # None/True: BESTOFN_CACHE_DIR or the user cache; False: no cache
    generator = MeteredBackend(cached(load_backend(model, base_url), the_cache), meter)

    def backend_for(config: JudgeConfig) -> Backend:
        spec = judge_model or config.model or DEFAULT_MODEL
        return MeteredBackend(cached(load_backend(spec, config.base_url or base_url), the_cache), meter)

    judges = build_judges(the_panel, backend_for, max_tokens=judge_max_tokens)

    started = time.perf_counter()
    item = JudgeInput(prompt=messages, seed=seed, reference=reference, constraints=constraints or {})
    if progress:
        progress("generate", 0, n)
    early_stop: dict[str, Any] | None = None
    if accept_threshold is not None:  # sample in waves until one candidate clears the threshold
        candidates, verdicts, generated, early_stop = await sample_in_waves(
            generator, judges, item, n=n, threshold=accept_threshold, wave_size=wave_size,
            temperature=temperature, max_tokens=max_tokens, panel=the_panel, meter=meter, progress=progress,
        )
    elif generator.serial:  # one call at a time: generate all, then judge judge-major (KV-cache order)
        candidates = await generate(
            generator, messages, n=n, temperature=temperature, max_tokens=max_tokens, seed=seed
        )
        if progress:
            progress("generate", n, n)
        generated = time.perf_counter()
        verdicts = await judge_all(judges, item, candidates, progress)
    else:  # each candidate is judged as soon as it exists
        candidates, verdicts, generated = await generate_and_judge(
            generator, judges, item, n=n, temperature=temperature, max_tokens=max_tokens, progress=progress
        )
    judged = time.perf_counter()

    unique_ids = [c.id for c in candidates if c.duplicate_of is None]
    result = aggregate(the_panel, unique_ids, verdicts, seed=seed, texts={c.id: c.text for c in candidates})
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
        # an answer the safety judge vetoed, or whose safety verdict failed, is never the chosen side of a pair
        never_chosen=result.unsafe,
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
            **meter.spend.model_dump(),
            seconds=round(judged - started, 3),
            generation_seconds=round(generated - started, 3),
            judging_seconds=round(judged - generated, 3),
        ),
        stats=result.stats if early_stop is None else {**result.stats, "early_stop": early_stop},
    )
    if log is not None:
        PreferenceLog(log).write(pairs)
    return selection


def select(prompt: str | list[Message] | list[dict[str, Any]], **options: Any) -> Selection:
    """Sync wrapper of `aselect` (same keyword arguments)."""
    return run_sync(aselect(prompt, **options))
