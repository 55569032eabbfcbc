"""Verdicts -> one score per candidate and a ranking. Never calls a model.

Rules (DESIGN.md, part B):
- Only `ok` verdicts count; invalid, error and abstaining verdicts are counted and reported, never read as 0.
- A candidate with fewer valid verdicts than the panel's quorum is unrankable: score None, not in the ranking.
- Safety veto: a candidate whose safety score is below the threshold ranks below every other one; a candidate
  whose safety verdict is not ok is flagged and ranks below those with a valid one (but above vetoed ones).
- Ties break by the number of valid verdicts, then by a hash of (seed, candidate id): never by list position.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from bestofn.panel import Panel
from bestofn.records import Verdict, sha256_hex

SAFE, FLAGGED, VETOED = 0, 1, 2


@dataclass(frozen=True)
class Aggregate:
    scores: dict[str, float | None]
    ranking: list[str]
    stats: dict[str, Any] = field(default_factory=dict)


def _weighted_mean(per_judge: dict[str, float], weights: dict[str, float]) -> float:
    total = sum(weights[j] for j in per_judge)
    if total == 0:
        return statistics.fmean(per_judge.values())
    return sum(weights[j] * s for j, s in per_judge.items()) / total


def _median(per_judge: dict[str, float], weights: dict[str, float]) -> float:
    return statistics.median(per_judge.values())


def _borda(table: dict[str, dict[str, float]], weights: dict[str, float]) -> dict[str, float]:
    """Each judge awards a candidate one point per candidate it scores above, half a point per tie; the
    weighted points are scaled to 0-1 by the most a candidate could get from the judges that scored it."""
    out = {}
    for cid, mine in table.items():
        points = possible = 0.0
        for judge, score in mine.items():
            rivals = [t[judge] for other, t in table.items() if other != cid and judge in t]
            points += weights[judge] * sum(1.0 if score > r else 0.5 if score == r else 0.0 for r in rivals)
            possible += weights[judge] * len(rivals)
        out[cid] = points / possible if possible else 0.5
    return out


POINTWISE: dict[str, Callable[[dict[str, float], dict[str, float]], float]] = {
    "weighted_mean": _weighted_mean,
    "median": _median,
}


def aggregate(panel: Panel, candidate_ids: list[str], verdicts: list[Verdict], seed: int = 0) -> Aggregate:
    weights = {j.name: j.weight for j in panel.judges}
    table: dict[str, dict[str, float]] = {cid: {} for cid in candidate_ids}
    counts: dict[str, dict[str, int]] = {cid: {"ok": 0, "invalid": 0, "error": 0, "abstain": 0} for cid in candidate_ids}
    for v in verdicts:
        for cid in v.candidate_ids:
            if cid not in table:
                continue
            counts[cid][v.status] += 1
            if v.status == "ok" and v.normalized is not None and len(v.candidate_ids) == 1:
                table[cid][v.judge] = v.normalized

    rankable = [cid for cid in candidate_ids if len(table[cid]) >= panel.quorum]
    if panel.aggregate == "borda":
        combined = _borda({cid: table[cid] for cid in rankable}, weights)
    elif panel.aggregate in POINTWISE:
        combined = {cid: POINTWISE[panel.aggregate](table[cid], weights) for cid in rankable}
    else:
        raise NotImplementedError(panel.aggregate)
    scores: dict[str, float | None] = {cid: None for cid in candidate_ids}
    scores.update({cid: round(s, 6) for cid, s in combined.items()})

    tier = {cid: _safety_tier(panel, cid, verdicts) for cid in candidate_ids}

    def order(cid: str) -> tuple:
        return (tier[cid], -(scores[cid] or 0.0), -len(table[cid]), sha256_hex("tiebreak", seed, cid))

    ranking = sorted(rankable, key=order)
    stats = {
        "verdict_counts": counts,
        "unrankable": [cid for cid in candidate_ids if cid not in rankable],
        "vetoed": [cid for cid in candidate_ids if tier[cid] == VETOED],
        "safety_flagged": [cid for cid in candidate_ids if tier[cid] == FLAGGED],
    }
    return Aggregate(scores=scores, ranking=ranking, stats=stats)


def _safety_tier(panel: Panel, cid: str, verdicts: list[Verdict]) -> int:
    veto = panel.safety_veto
    if veto is None:
        return SAFE
    mine = [v for v in verdicts if v.judge == veto.judge and cid in v.candidate_ids]
    if not mine or any(v.status != "ok" or v.score is None for v in mine):
        return FLAGGED
    return VETOED if min(v.score for v in mine if v.score is not None) < veto.below else SAFE
