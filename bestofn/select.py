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
from bestofn.cache import Cache, cached, resolve_cache
from bestofn.errors import ConfigError
from bestofn.generate import generate, mark_duplicates, stream_candidates
from bestofn.judging import Judge, JudgeInput, build_judges
from bestofn.meter import Meter, MeteredBackend, innermost
from bestofn.pairs import make_pairs
from bestofn.panel import JudgeConfig, Panel, load_panel
from bestofn.records import Candidate, Cost, Message, Selection, Verdict, as_messages
from bestofn.sinks import PreferenceLog
from bestofn.sync import run_sync

MAX_N = 64
DEFAULT_MODEL = "local"
DEFAULT_MAX_TOKENS = 512
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


async def generate_and_judge(
    generator: Backend,
    judges: list[Judge],
    item: JudgeInput,
    *,
    n: int,
    temperature: float,
    max_tokens: int,
    progress: Progress | None = None,
) -> tuple[list[Candidate], list[Verdict], float]:
    """Generate n candidates and judge each one as soon as it arrives, by every pointwise judge whose backend
    takes concurrent calls. Judges on a serial backend (and listwise judges) run once all candidates exist,
    judge by judge, candidate last, as in `judge_all`. Returns (candidates in sampling order, verdicts in
    `judge_all`'s order, the time generation ended)."""
    # A backend may learn its traits on first contact (a server's flavour: whether it is serial): let the judges'
    # backends do so while the generator works, and decide which judges go early once the first candidate exists.
    settled = asyncio.ensure_future(_settle([j.backend for j in judges if j.backend is not None]))
    early: list[Judge] | None = None
    tasks: list[asyncio.Future[tuple[Judge, list[Candidate], list[Verdict]]]] = []
    done = 0

    async def run(judge: Judge, candidates: list[Candidate]) -> tuple[Judge, list[Candidate], list[Verdict]]:
        nonlocal done
        verdicts = await judge.judge(item, candidates)
        done += 1
        if progress:
            progress("judge", done, len(tasks))
        return judge, candidates, verdicts

    arrived: list[Candidate] = []
    seen: set[str] = set()
    try:
        async for candidate in stream_candidates(
            generator, item.prompt, n=n, temperature=temperature, max_tokens=max_tokens, seed=item.seed
        ):
            arrived.append(candidate)
            if progress:
                progress("generate", len(arrived), n)
            if early is None:
                await settled
                early = [j for j in judges if j.pointwise and not (j.backend is not None and j.backend.serial)]
            if candidate.id not in seen:
                seen.add(candidate.id)
                tasks.extend(asyncio.ensure_future(run(j, [candidate])) for j in early)
        generated = time.perf_counter()
        early = early or []
        candidates = mark_duplicates(arrived)
        unique = [c for c in candidates if c.duplicate_of is None]
        for judge in judges:
            if any(judge is e for e in early):
                continue
            if judge.pointwise:
                tasks.extend(asyncio.ensure_future(run(judge, [c])) for c in unique)
            else:
                tasks.append(asyncio.ensure_future(run(judge, unique)))
        if progress:
            progress("judge", done, len(tasks))
        results = await asyncio.gather(*tasks)
    except BaseException:
        settled.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    # judge_all's order: panel order, then the first sample index of the (first) candidate judged
    judge_rank = {id(j): k for k, j in enumerate(judges)}
    first_index = {c.id: c.index for c in unique}
    results.sort(key=lambda r: (judge_rank[id(r[0])], first_index[r[1][0].id] if r[1] else 0))
    return candidates, [v for _, _, verdicts in results for v in verdicts], generated


async def _settle(backends: list[Backend]) -> None:
    """Await `resolve()` on the backends that have one (e.g. `vllm:` asks the server its flavour); a failure
    here is left for the real call to report."""
    found = {id(b): b for b in map(innermost, backends) if callable(getattr(b, "resolve", None))}
    await asyncio.gather(*(b.resolve() for b in found.values()), return_exceptions=True)  # type: ignore[attr-defined]


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
    With `accept_threshold`, sample in waves of `wave_size` and stop once one clears it (bestofn.early_stop)."""
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
        from bestofn.early_stop import sample_in_waves

        candidates, verdicts, generated, early_stop = await sample_in_waves(
            generator, judges, item, n=n, threshold=accept_threshold, wave_size=wave_size,
            temperature=temperature, max_tokens=max_tokens, meter=meter, progress=progress,
            rank=lambda cs, vs: aggregate(the_panel, [c.id for c in cs], vs, seed=seed,
                                          texts={c.id: c.text for c in cs}),
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
            calls=meter.calls,
            prompt_tokens=meter.prompt_tokens,
            completion_tokens=meter.completion_tokens,
            cache_hits=meter.cache_hits,
            usd=None if meter.usd is None else round(meter.usd, 6),
            unpriced_calls=meter.unpriced_calls,
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
