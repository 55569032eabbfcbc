"""Verdicts -> one score per candidate and a ranking. Never calls a model.

Rules (DESIGN.md, part B):
- Only `ok` verdicts count; invalid, error and abstaining verdicts are counted and reported, never read as 0.
- A candidate with fewer valid verdicts than the panel's quorum is unrankable: score None, not in the ranking.
- Safety veto: a candidate whose safety score is below the threshold ranks below every other one; a candidate
  whose safety verdict is not ok is flagged and ranks below those with a valid one (but above vetoed ones).
- Ties break by the number of valid verdicts, then by a hash of (seed, candidate id): never by list position.
- Content-free candidates (given `texts`; bestofn.judging.content) are in the result's `content_free` (each
  flag in stats["content_free"]); the panel's `content_free` ranks them below every candidate with content
  ("demote", the default; vetoed ones still come last), makes them unrankable ("veto"), or only records them
  ("flag").
- Gates (verifier-first): judges with `gate = true` do not score; a candidate that fails a gate ranks below every
  one that passes (or whose gate abstained: nothing to check), closest to passing first; an invalid gate
  verdict ranks between the two. Safety tiers come before gates.
- Pairwise verdicts score a candidate by its win rate per judge; `bradley_terry` fits strengths over every
  comparison (pairwise verdicts, and pairs induced from each other judge's scores) and scores a candidate by
  its expected win rate (comparisons.py); with `style_control`, length and markdown counts are covariates of
  that fit (its coefficients in stats["bradley_terry"]["style_control"]). Length control and bias: bias.py.
- `majority_of_best` (self-consistency among the best): the other judges' weighted mean picks the top_k
  candidates; their final answers (the consensus judge's, each weighted by its copies) vote; a candidate scores
  the share of those votes its answer got (0 without an answer), the other judges' mean breaking ties.

The tiers are typed fields of the result (`vetoed`, `safety_flagged`, `content_free`, `unrankable`, `gate_failed`,
`gate_unchecked`, and `keys`, the sort key of each ranked candidate); the stages read those, and `stats` repeats
the sets as lists for the Selection's JSON.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Any, Callable

from bestofn.ranking.bias import (
    control_length, judge_agreement, length_score_correlation, position_consistency, shuffle_agreement,
)
from collections import Counter

from bestofn.ranking.comparisons import bradley_terry, from_pairwise, from_scores, style_features, win_rates
from bestofn.ranking.content import content_flags
from bestofn.config.panel import Panel
from bestofn.records import Verdict, sha256_hex

SAFE, FLAGGED, VETOED = 0, 1, 2
GATE_PASSED, GATE_UNCHECKED, GATE_FAILED = 0, 1, 2


@dataclass(frozen=True)
class Aggregate:
    """The scores, the ranking, and the tiers the ranking put each candidate in (the typed record every stage
    reads; `stats` holds the same tiers as JSON lists for the Selection, and the statistics)."""

    scores: dict[str, float | None]
    ranking: list[str]
    stats: dict[str, Any] = field(default_factory=dict)
    vetoed: frozenset[str] = frozenset()  # the safety judge scored it below the veto: ranked last
    safety_flagged: frozenset[str] = frozenset()  # no valid safety verdict: below every safe candidate
    content_free: frozenset[str] = frozenset()  # bestofn.judging.content flagged it (detail in stats)
    unrankable: frozenset[str] = frozenset()  # below the quorum, or content-free under content_free = "veto"
    gate_failed: frozenset[str] = frozenset()  # a gate judge (verifier-first) scored it below its gate_pass
    gate_unchecked: frozenset[str] = frozenset()  # a gate verdict was invalid or an error: between the two
    keys: dict[str, tuple] = field(default_factory=dict)  # per ranked candidate: the ranking's sort key, minus
    #                                                        the seeded hash that breaks exact ties

    @property
    def unsafe(self) -> frozenset[str]:
        """Candidates that are never the chosen side of a pair nor accepted by early stop."""
        return self.vetoed | self.safety_flagged

    def compare(self, first: str, second: str) -> str | None:
        """'first' or 'second' (the one `ranking` puts higher), 'tie' when only the seeded hash orders them,
        None when either is not ranked."""
        if first not in self.keys or second not in self.keys:
            return None
        if self.keys[first] == self.keys[second]:
            return "tie"
        return "first" if self.keys[first] < self.keys[second] else "second"


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


def aggregate(
    panel: Panel,
    candidate_ids: list[str],
    verdicts: list[Verdict],
    seed: int = 0,
    *,
    texts: dict[str, str] | None = None,
) -> Aggregate:
    """`texts` (candidate id -> text) enables length statistics and the panel's length control."""
    weights = panel.weights()  # scoring judges; gates (verifier-first) only gate
    gates = panel.gates()
    table: dict[str, dict[str, float]] = {cid: {} for cid in candidate_ids}
    gate_table: dict[str, dict[str, float]] = {cid: {} for cid in candidate_ids}
    counts: dict[str, dict[str, int]] = {
        cid: {"ok": 0, "invalid": 0, "error": 0, "abstain": 0} for cid in candidate_ids
    }
    totals: dict[str, dict[str, int]] = {}
    for v in verdicts:
        per_judge = totals.setdefault(v.judge, {"ok": 0, "invalid": 0, "error": 0, "abstain": 0})
        per_judge[v.status] += 1
        for cid in v.candidate_ids:
            if cid not in table:
                continue
            counts[cid][v.status] += 1
            if v.status == "ok" and v.normalized is not None and len(v.candidate_ids) == 1:
                if v.judge in gates:
                    gate_table[cid][v.judge] = min(v.normalized, gate_table[cid].get(v.judge, 1.0))
                elif v.judge in weights:
                    table[cid][v.judge] = v.normalized
    comparisons = from_pairwise(verdicts, weights)
    pairwise_judges = sorted({c.judge for c in comparisons})
    for judge in pairwise_judges:  # a pairwise judge scores a candidate by its win rate
        for cid, rate in win_rates(comparisons, candidate_ids, judge).items():
            if rate is not None:
                table[cid][judge] = rate

    rankable = [cid for cid in candidate_ids if len(table[cid]) >= panel.quorum]
    # content-free candidates (empty, punctuation, a lone opener, repetitive): bestofn.judging.content
    empty = {cid: flag for cid, flag in content_flags(texts).items() if cid in table} if texts else {}
    vetoed_empty = panel.content_free == "veto" and bool(empty)
    if vetoed_empty:
        rankable = [cid for cid in rankable if cid not in empty]
    comparative = all(j.kind in ("pairwise", "listwise", "consensus") for j in panel.judges if not j.gate)
    lone = len(candidate_ids) == 1 and comparative and not rankable and not vetoed_empty  # ranked, unscored
    stats: dict[str, Any] = {}
    secondary: dict[str, float] = {}  # what breaks ties of the score, before the number of valid verdicts
    if panel.aggregate == "borda":
        combined = _borda({cid: table[cid] for cid in rankable}, weights)
    elif panel.aggregate in POINTWISE:
        combined = {cid: POINTWISE[panel.aggregate](table[cid], weights) for cid in rankable}
    elif panel.aggregate == "majority_of_best":
        combined, secondary, stats["majority_of_best"] = _majority_of_best(panel, rankable, table, verdicts, seed)
    elif panel.aggregate == "bradley_terry":
        pointwise = {j for cid in rankable for j in table[cid]} - set(pairwise_judges)
        style = {c: style_features(texts[c]) for c in rankable if c in texts} if panel.style_control and texts else None
        fit = bradley_terry(comparisons + from_scores({c: table[c] for c in rankable}, weights, pointwise),
                            rankable, ties=panel.ties, style=style)
        combined = fit.expected
        stats["bradley_terry"] = {"strength": {c: round(x, 6) for c, x in fit.strength.items()}, "ties": fit.ties,
                                  "tie_parameter": fit.tie_parameter, "comparisons": fit.comparisons,
                                  "converged": fit.converged}
        if panel.style_control:
            stats["bradley_terry"]["style_control"] = fit.extra.get("style") or "no candidate texts: not applied"
    else:
        raise NotImplementedError(panel.aggregate)
    if comparisons:
        rates = win_rates(comparisons, candidate_ids)
        stats["win_rate"] = {c: None if r is None else round(r, 6) for c, r in rates.items()}
    raw_scores = dict(combined)
    if panel.length_control and texts and combined:
        combined, stats["length_control"] = control_length(combined, texts, panel.length_control)
    if lone:
        rankable = list(candidate_ids)
        stats["lone"] = "one distinct candidate and only comparative judges: ranked, not scored"
    scores: dict[str, float | None] = {cid: None for cid in candidate_ids}
    scores.update({cid: round(s, 6) for cid, s in combined.items()})

    tier = {cid: _safety_tier(panel, cid, verdicts) for cid in candidate_ids}
    gate = {cid: _gate(panel, cid, gate_table[cid], verdicts) for cid in candidate_ids}

    demote = panel.content_free == "demote"

    def key(cid: str) -> tuple:  # vetoed last; content-free (demote) below every candidate with content
        return (tier[cid] == VETOED, demote and cid in empty, tier[cid], gate[cid][0], -gate[cid][1],
                -(scores[cid] or 0.0), -secondary.get(cid, 0.0), -len(table[cid]))

    keys = {cid: key(cid) for cid in rankable}
    ranking = sorted(rankable, key=lambda cid: (keys[cid], sha256_hex("tiebreak", seed, cid)))
    unrankable = [cid for cid in candidate_ids if cid not in rankable]
    vetoed = [cid for cid in candidate_ids if tier[cid] == VETOED]
    flagged = [cid for cid in candidate_ids if tier[cid] == FLAGGED]
    stats = {
        "verdict_counts": counts,
        "unrankable": unrankable,
        "vetoed": vetoed,
        "safety_flagged": flagged,
        "content_free": empty,
        "verdict_totals": totals,
        "per_judge": {cid: {j: round(x, 6) for j, x in row.items()} for cid, row in table.items()},
        **stats,
    }
    if gates:
        levels = ((GATE_PASSED, "passed"), (GATE_UNCHECKED, "unchecked"), (GATE_FAILED, "failed"))
        stats["gate"] = {name: [cid for cid in candidate_ids if gate[cid][0] == level] for level, name in levels}
    stats["bias"] = _bias(verdicts, table, list(weights), raw_scores, texts, panel)
    return Aggregate(scores=scores, ranking=ranking, stats=stats, vetoed=frozenset(vetoed),
                     safety_flagged=frozenset(flagged), content_free=frozenset(empty),
                     unrankable=frozenset(unrankable), keys=keys,
                     gate_failed=frozenset(c for c in candidate_ids if gate[c][0] == GATE_FAILED),
                     gate_unchecked=frozenset(c for c in candidate_ids if gate[c][0] == GATE_UNCHECKED))


def _majority_of_best(panel: Panel, rankable: list[str], table: dict[str, dict[str, float]],
                      verdicts: list[Verdict], seed: int) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """(score: the top_k's vote share of the candidate's answer, tie-break: the other judges' weighted mean, stats)."""
    voter = next(j.name for j in panel.judges if j.kind == "consensus")
    weights = {j: w for j, w in panel.weights().items() if j != voter}
    rubric = {cid: _weighted_mean(mine, weights) for cid in rankable
              if (mine := {j: s for j, s in table[cid].items() if j in weights})}
    top = sorted(rubric, key=lambda c: (-rubric[c], sha256_hex("tiebreak", seed, c)))[: panel.top_k]
    answers: dict[str, tuple[str, int]] = {}
    for v in verdicts:
        if v.judge == voter and v.details.get("answer") is not None and len(v.candidate_ids) == 1:
            answers[v.candidate_ids[0]] = (str(v.details["answer"]).casefold(), int(v.details.get("copies", 1)))
    votes = Counter[str]()
    for cid in top:
        if cid in answers:
            votes[answers[cid][0]] += answers[cid][1]
    total = sum(votes.values())
    share = {cid: votes[answers[cid][0]] / total if total and cid in answers else 0.0 for cid in rankable}
    winner = max(votes, key=lambda a: (votes[a], -min(top.index(c) for c in top if answers.get(c, ("",))[0] == a)),
                 default=None)
    return share, rubric, {"top_k": top, "votes": dict(votes), "winner": winner}


def _bias(verdicts: list[Verdict], table: dict[str, dict[str, float]], judges: list[str],
          scores: dict[str, float], texts: dict[str, str] | None, panel: Panel) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if any(v.kind == "pairwise" for v in verdicts):
        out["position_consistency"] = position_consistency(verdicts)
    if any(v.kind == "listwise" for v in verdicts):
        out["shuffle_agreement"] = shuffle_agreement(verdicts)
    if texts:
        unit = panel.length_control.unit if panel.length_control else "words"
        out["length_score_spearman"] = length_score_correlation(scores, texts, unit)  # before length control
    scoring = [j for j in judges if any(j in row for row in table.values())]
    if len(scoring) >= 2:
        out["judge_agreement"] = judge_agreement(table, scoring)
    return out


def _gate(panel: Panel, cid: str, passed: dict[str, float], verdicts: list[Verdict]) -> tuple[int, float]:
    """(gate level, mean gate score): passed when every gate judge passed or abstained (nothing to check);
    unchecked when a gate verdict is invalid or an error; failed when a gate judge scored below its pass mark."""
    gates = panel.gates()
    if not gates:
        return GATE_PASSED, 1.0
    mine = [v for v in verdicts if v.judge in gates and cid in v.candidate_ids]
    if any(passed.get(name, 1.0) < config.gate_pass for name, config in gates.items() if name in passed):
        return GATE_FAILED, statistics.fmean(passed.values())
    if any(v.status in ("invalid", "error") for v in mine):
        return GATE_UNCHECKED, 0.0
    return GATE_PASSED, 1.0


def _safety_tier(panel: Panel, cid: str, verdicts: list[Verdict]) -> int:
    veto = panel.safety_veto
    if veto is None:
        return SAFE
    mine = [v for v in verdicts if v.judge == veto.judge and cid in v.candidate_ids]
    if not mine or any(v.status != "ok" or v.score is None for v in mine):
        return FLAGGED
    return VETOED if min(v.score for v in mine if v.score is not None) < veto.below else SAFE
