"""Early stop: sample candidates in waves and stop once one clears `accept_threshold`.

`aselect(..., accept_threshold=0.8, wave_size=2)` samples `wave_size` candidates, judges the new ones, ranks
everything so far, and stops as soon as the best candidate's aggregate normalised score (0 to 1) reaches the
threshold (and the safety judge neither vetoed nor flagged it); otherwise it samples the next wave, up to n.

Wave k samples with seed `seed + k * wave_size`, so a backend that seeds sample i with `seed + i` (llama.cpp,
fan-out servers) draws exactly the first candidates of an n-sample run. A candidate that repeats an earlier
wave's text is marked a duplicate and not judged again. Pointwise panels only (a pairwise or listwise judge's
scores are relative to the candidates it compared). The report (in `Selection.stats["early_stop"]`) says
how many candidates were sampled and how many calls and tokens the waves not run would have cost (estimated
from the per-candidate average of the waves that ran).
"""

from __future__ import annotations

import math
import time
from typing import Any

from bestofn.backends.base import Backend
from bestofn.backends.meter import Meter
from bestofn.config.panel import Panel
from bestofn.errors import ConfigError
from bestofn.judging import Judge, JudgeInput
from bestofn.pipeline.generate import generate, mark_duplicates
from bestofn.pipeline.schedule import Progress, judge_all
from bestofn.ranking.aggregate import Aggregate, aggregate
from bestofn.records import Candidate, Verdict


def default_wave_size(n: int) -> int:
    return max(1, math.ceil(n / 4))


def check_threshold(threshold: float) -> float:
    if not 0.0 <= threshold <= 1.0:
        raise ConfigError(f"accept_threshold is an aggregate normalised score between 0 and 1, got {threshold}")
    return threshold


def accepted(result: Aggregate, threshold: float) -> str | None:
    """The best candidate's id when it clears the threshold and is safe, else None."""
    if not result.ranking:
        return None
    best = result.ranking[0]
    score = result.scores.get(best)
    return best if score is not None and score >= threshold and best not in result.unsafe else None


async def sample_in_waves(
    generator: Backend,
    judges: list[Judge],
    item: JudgeInput,
    *,
    n: int,
    threshold: float,
    wave_size: int | None,
    temperature: float,
    max_tokens: int,
    panel: Panel,
    meter: Meter,
    progress: Progress | None = None,
) -> tuple[list[Candidate], list[Verdict], float, dict[str, Any]]:
    """Returns (candidates in sampling order, verdicts, the time the last wave's generation ended, report)."""
    check_threshold(threshold)
    comparative = [j.name for j in judges if not j.pointwise]
    if comparative:
        raise ConfigError(f"accept_threshold needs a panel of pointwise judges (rubric, verifier): the scores of "
                          f"{', '.join(comparative)} are relative to the candidates compared, so no threshold holds "
                          "across waves")
    size = wave_size or default_wave_size(n)
    if size < 1:
        raise ConfigError(f"wave_size must be at least 1, got {size}")
    candidates: list[Candidate] = []
    verdicts: list[Verdict] = []
    judged: set[str] = set()
    generated = time.perf_counter()
    waves, winner = 0, None
    while len(candidates) < n:
        start, count = len(candidates), min(size, n - len(candidates))
        wave = await generate(generator, item.prompt, n=count, temperature=temperature, max_tokens=max_tokens,
                              seed=item.seed + start)
        waves += 1
        candidates = mark_duplicates(candidates + [_renumber(c, start) for c in wave])
        generated = time.perf_counter()
        if progress:
            progress("generate", len(candidates), n)
        new = [c for c in candidates[start:] if c.duplicate_of is None and c.id not in judged]
        judged.update(c.id for c in new)
        verdicts += await judge_all(judges, item, new, progress)
        unique = [c for c in candidates if c.duplicate_of is None]
        ranked = aggregate(panel, [c.id for c in unique], verdicts, seed=item.seed,
                           texts={c.id: c.text for c in unique})
        winner = accepted(ranked, threshold)
        if winner is not None:
            break
    skipped = n - len(candidates)
    spent = meter.spend
    per_candidate_calls = (spent.calls + spent.cache_hits) / max(1, len(candidates))
    per_candidate_tokens = spent.tokens / max(1, len(candidates))
    report = {
        "threshold": threshold,
        "wave_size": size,
        "waves": waves,
        "n": n,
        "sampled": len(candidates),
        "stopped_early": skipped > 0,
        "accepted": winner,
        "calls_saved_est": round(per_candidate_calls * skipped),
        "tokens_saved_est": round(per_candidate_tokens * skipped),
    }
    return candidates, verdicts, generated, report


def _renumber(candidate: Candidate, offset: int) -> Candidate:
    index = candidate.index + offset
    return candidate.model_copy(update={"index": index, "params": {**candidate.params, "sample": index},
                                        "duplicate_of": None})
