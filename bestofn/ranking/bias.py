"""Bias statistics of one selection, and length control. Never calls a model.

- position consistency (pairwise): the share of pairs whose two orders agree, and how often the answer shown
  first won an order that was not a tie (0.5 = no position preference);
- shuffle agreement (listwise): mean Kendall tau between the rankings of the shuffled orders, and the
  correlation of shown position with assigned rank;
- length: Spearman correlation of the aggregate score with the candidates' lengths;
- agreement between judges: Krippendorff's alpha (interval) over the judges' normalised scores (the
  `krippendorff` package, extra `stats`);
- length control: `regress` removes the linear trend of the score on log length across the candidates
  (AlpacaEval's length-controlled idea, fitted per selection: the candidates' lengths are the only
  covariate); `penalty` subtracts `strength` per doubling of length over the median. Both report the raw
  scores, the adjustment and whether the best candidate changed.

Statistics that cannot be computed (too few candidates, no variance, a missing package) are None, with the
reason where it is not obvious.
"""

from __future__ import annotations

import itertools
import math
import statistics
from typing import Any

from bestofn.config.panel import LengthControl
from bestofn.records import Verdict


def length_of(text: str, unit: str = "words") -> int:
    return len(text.split()) if unit == "words" else len(text)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def pearson(x: list[float], y: list[float]) -> float | None:
    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return None
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy)


def spearman(x: list[float], y: list[float]) -> float | None:
    return pearson(_ranks(x), _ranks(y)) if len(x) >= 3 else None


def kendall_tau(x: list[float], y: list[float]) -> float | None:
    pairs = list(itertools.combinations(range(len(x)), 2))
    if not pairs:
        return None
    score = sum((1 if (x[i] - x[j]) * (y[i] - y[j]) > 0 else -1 if (x[i] - x[j]) * (y[i] - y[j]) < 0 else 0)
                for i, j in pairs)
    return score / len(pairs)


def position_consistency(verdicts: list[Verdict]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for judge in dict.fromkeys(v.judge for v in verdicts if v.kind == "pairwise"):
        mine = [v for v in verdicts if v.judge == judge and v.kind == "pairwise" and v.status == "ok"]
        said = [o.get("said") for v in mine for o in v.details.get("orders", [])]
        decided = [s for s in said if s in ("A", "B")]
        consistent = [bool(v.details.get("consistent")) for v in mine]
        out[judge] = {
            "pairs": len(mine),
            "consistency": round(sum(consistent) / len(consistent), 4) if consistent else None,
            "first_shown_wins": round(decided.count("A") / len(decided), 4) if decided else None,
            "ties": sum(v.details.get("winner") is None for v in mine),
        }
    return out


def shuffle_agreement(verdicts: list[Verdict]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for judge in dict.fromkeys(v.judge for v in verdicts if v.kind == "listwise"):
        mine = [v for v in verdicts if v.judge == judge and v.kind == "listwise" and v.status == "ok"]
        k = min((len(v.details.get("ranks", [])) for v in mine), default=0)
        taus = []
        for s, t in itertools.combinations(range(k), 2):
            tau = kendall_tau([v.details["ranks"][s] for v in mine], [v.details["ranks"][t] for v in mine])
            if tau is not None:
                taus.append(tau)
        shown = [p for v in mine for p in v.details.get("shown", [])[:k]]
        ranked = [r for v in mine for r in v.details.get("ranks", [])[:k]]
        out[judge] = {
            "shuffles": k,
            "kendall_tau": round(statistics.fmean(taus), 4) if taus else None,
            "position_rank_spearman": None if (s := spearman(shown, ranked)) is None else round(s, 4),
        }
    return out


def judge_agreement(table: dict[str, dict[str, float]], judges: list[str]) -> dict[str, Any]:
    """Krippendorff's alpha (interval) with judges as raters and candidates as units."""
    units = [cid for cid, row in table.items() if sum(j in row for j in judges) >= 2]
    if len(judges) < 2 or len(units) < 2:
        return {"krippendorff_alpha": None, "reason": "needs two judges scoring two candidates"}
    try:
        import krippendorff
        import numpy as np
    except ModuleNotFoundError:
        return {"krippendorff_alpha": None, "reason": "needs the krippendorff package: pip install 'bestofn[stats]'"}
    data = np.array([[table[cid].get(j, np.nan) for cid in units] for j in judges], dtype=float)
    try:
        alpha = float(krippendorff.alpha(reliability_data=data, level_of_measurement="interval"))
    except (ValueError, ZeroDivisionError) as exc:
        return {"krippendorff_alpha": None, "reason": str(exc)}
    if math.isnan(alpha):
        return {"krippendorff_alpha": None, "reason": "no variation in the scores"}
    return {"krippendorff_alpha": round(alpha, 4), "judges": judges, "candidates": len(units)}


def length_score_correlation(scores: dict[str, float], texts: dict[str, str], unit: str = "words") -> float | None:
    ids = [cid for cid in scores if cid in texts]
    rho = spearman([float(length_of(texts[c], unit)) for c in ids], [scores[c] for c in ids])
    return None if rho is None else round(rho, 4)


def control_length(
    scores: dict[str, float], texts: dict[str, str], config: LengthControl
) -> tuple[dict[str, float], dict[str, Any]]:
    """Adjusted scores (clamped to 0-1) and a report."""
    ids = [cid for cid in scores if cid in texts]
    lengths = {cid: length_of(texts[cid], config.unit) for cid in ids}
    logs = {cid: math.log2(max(lengths[cid], 1)) for cid in ids}
    report: dict[str, Any] = {"method": config.method, "unit": config.unit, "lengths": lengths,
                              "raw_scores": {cid: round(scores[cid], 6) for cid in ids}}
    adjusted = dict(scores)
    if config.method == "penalty":
        if ids:
            median = statistics.median(logs.values())
            for cid in ids:
                adjusted[cid] = scores[cid] - config.strength * (logs[cid] - median)
        report["strength"] = config.strength
    else:
        x = [logs[c] for c in ids]
        if len(ids) < 3 or len(set(x)) < 2:
            report["slope"] = None
            report["reason"] = "needs three candidates of different lengths"
        else:
            mx, my = statistics.fmean(x), statistics.fmean(scores[c] for c in ids)
            slope = sum((logs[c] - mx) * (scores[c] - my) for c in ids) / sum((v - mx) ** 2 for v in x)
            for cid in ids:
                adjusted[cid] = scores[cid] - slope * (logs[cid] - mx)
            report["slope"] = round(slope, 6)  # score per doubling of length
    adjusted = {cid: round(min(1.0, max(0.0, s)), 6) for cid, s in adjusted.items()}
    best_raw = max(ids, key=lambda c: scores[c], default=None)
    best_adj = max(ids, key=lambda c: adjusted[c], default=None)
    report["best_changed"] = best_raw != best_adj
    return adjusted, report
