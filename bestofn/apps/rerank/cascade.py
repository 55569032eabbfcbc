"""Stages: each scores the documents the previous stage kept, sorts them and keeps its top k.

Every method runs as a cascade of one stage; `cascade` chains a cheap stage and an LLM stage (default
`bi-encoder:20,llm-pointwise`: the bi-encoder keeps 20 of any number of documents, and the LLM scores only
those 20). Sorting is by score, best first; documents without a score go last; equal scores keep the order
the documents came in (the previous stage's order), so the cheap stage breaks the LLM's ties.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from bestofn.errors import ConfigError
from bestofn.records import Spend
from bestofn.apps.rerank.base import Ranker

DEFAULT_CASCADE = "bi-encoder:20,llm-pointwise"


@dataclass(frozen=True)
class Stage:
    method: str
    top_k: int | None = None  # None: keep every document this stage scored


def parse_stages(spec: str, methods: tuple[str, ...]) -> list[Stage]:
    """`"bi-encoder:20,llm-pointwise:5"` -> stages; a stage without `:K` keeps everything it scored."""
    stages = []
    for part in (p.strip() for p in spec.split(",")):
        method, _, k = part.partition(":")
        method = method.strip()
        if method not in methods or method == "cascade":
            raise ConfigError(f"cascade stage {part!r}: unknown method {method!r}; "
                              f"one of {', '.join(m for m in methods if m != 'cascade')}")
        try:
            top_k = int(k) if k.strip() else None
        except ValueError:
            raise ConfigError(f"cascade stage {part!r}: top k {k!r} is not an integer") from None
        if top_k is not None and top_k < 1:
            raise ConfigError(f"cascade stage {part!r}: top k must be at least 1")
        stages.append(Stage(method, top_k))
    if not stages:
        raise ConfigError("a cascade needs at least one stage")
    return stages


class StageReport(Spend):
    """One stage's work: documents in and kept, what was scored and failed, its Spend (LLM calls, cache hits,
    tokens, money: bestofn.apps.rerank.base.RankerStats) and how long it took."""

    method: str
    model: str
    input: int
    kept: int
    scored: int = 0
    failed: int = 0
    batches: int = 0
    passes: int | None = None  # llm-listwise
    windows: int | None = None  # llm-listwise window calls (re-asks not counted)
    reasked: int | None = None  # llm-listwise windows whose permutation was asked again
    repaired: int | None = None  # llm-listwise windows whose permutation was still broken, then repaired
    problems: list[str] = []  # the first few
    seconds: float = 0.0


def _ordered(indices: list[int], scores: list[float | None]) -> list[tuple[int, float | None]]:
    rows = list(zip(indices, scores))
    # Python's sort is stable: equal scores keep their incoming order; None after every number
    return sorted(rows, key=lambda r: (r[1] is None, -(r[1] or 0.0)))


async def run_stages(
    query: str, texts: list[str], stages: list[tuple[Ranker, int | None]], top_n: int | None
) -> tuple[list[tuple[int, float | None]], list[StageReport]]:
    """Return (index, score) best first for the documents that survive every stage, and one report per stage."""
    alive: list[int] = list(range(len(texts)))
    ranked: list[tuple[int, float | None]] = [(i, None) for i in alive]
    reports = []
    for number, (ranker, top_k) in enumerate(stages):
        last = number == len(stages) - 1
        keep = top_k
        if last and top_n is not None:
            keep = top_n if keep is None else min(keep, top_n)
        started = time.perf_counter()
        hint = keep if last else top_k
        scores = await ranker.score(query, [texts[i] for i in alive], hint) if alive else []
        ranked = _ordered(alive, scores)[:keep]
        alive = [i for i, _ in ranked]
        reports.append(_report(ranker, len(scores), len(alive), time.perf_counter() - started))
    return ranked, reports


def _report(ranker: Ranker, given: int, kept: int, seconds: float) -> StageReport:
    s = ranker.stats
    log = getattr(ranker, "log", None)
    return StageReport(
        **s.meter.spend.model_dump(), method=ranker.method, model=ranker.model, input=given, kept=kept,
        scored=s.scored, failed=s.failed, batches=s.batches,
        passes=log.passes if log else None, windows=log.windows if log else None,
        reasked=log.reasked if log else None, repaired=log.repaired if log else None, problems=s.problems[:5],
        seconds=round(seconds, 4),
    )
