"""Pairwise comparisons -> win rates and Bradley-Terry strengths. Never calls a model.

A Comparison is one judged pair: a's points (1 win, 0.5 tie, 0 loss) and a weight (the judge's weight).
They come straight from pairwise verdicts, or are induced from a judge's scores on two candidates (so that
Bradley-Terry can also combine pointwise and listwise judges: a judge that scores x above y is a win for x).

Bradley-Terry: P(i beats j) = s_i / (s_i + s_j), fitted by maximum likelihood (scipy's L-BFGS) with a weak
Gaussian prior on the log-strengths, which keeps them finite when a candidate won (or lost) every comparison
and barely moves them otherwise. Ties count as half a win each (`ties="half"`), or follow Davidson's model
(`ties="davidson"`): P(i beats j) = s_i / (s_i + s_j + nu sqrt(s_i s_j)), P(tie) = nu sqrt(s_i s_j) / (same),
with nu fitted too. A candidate's score is its expected win rate against the others under the fit (0 to 1).
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

from bestofn.errors import MissingExtraError
from bestofn.records import Verdict

PRIOR = 1e-3  # precision of the Gaussian prior on log-strengths


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    outcome: float  # a's points: 1 win, 0.5 tie, 0 loss
    weight: float = 1.0
    judge: str = ""


@dataclass
class BradleyTerry:
    strength: dict[str, float]  # log-strengths, centred on 0
    expected: dict[str, float]  # expected win rate against the others, 0 to 1
    ties: str = "half"
    tie_parameter: float | None = None  # Davidson's nu
    comparisons: int = 0
    converged: bool = True
    extra: dict = field(default_factory=dict)


def from_pairwise(verdicts: list[Verdict], weights: dict[str, float]) -> list[Comparison]:
    return [
        Comparison(v.candidate_ids[0], v.candidate_ids[1], float(v.normalized), weights.get(v.judge, 1.0), v.judge)
        for v in verdicts
        if v.kind == "pairwise" and v.status == "ok" and len(v.candidate_ids) == 2 and v.normalized is not None
        and v.judge in weights
    ]


def from_scores(table: dict[str, dict[str, float]], weights: dict[str, float], judges: set[str]) -> list[Comparison]:
    """Every pair of candidates that a judge in `judges` scored: the higher score wins, equal is a tie."""
    out = []
    for judge in sorted(judges):
        scored = [(cid, row[judge]) for cid, row in table.items() if judge in row]
        for (x, sx), (y, sy) in itertools.combinations(scored, 2):
            out.append(Comparison(x, y, 1.0 if sx > sy else 0.0 if sx < sy else 0.5, weights.get(judge, 1.0), judge))
    return out


def win_rates(comparisons: list[Comparison], ids: list[str], judge: str | None = None) -> dict[str, float | None]:
    """(weighted wins + half the ties) / weighted games; None for a candidate with no comparison."""
    points = {cid: 0.0 for cid in ids}
    games = {cid: 0.0 for cid in ids}
    for c in comparisons:
        if (judge is not None and c.judge != judge) or c.a not in points or c.b not in points:
            continue
        points[c.a] += c.weight * c.outcome
        points[c.b] += c.weight * (1.0 - c.outcome)
        games[c.a] += c.weight
        games[c.b] += c.weight
    return {cid: (points[cid] / games[cid] if games[cid] else None) for cid in ids}


def _scipy():
    try:
        import numpy as np
        from scipy.optimize import minimize
    except ModuleNotFoundError as exc:
        raise MissingExtraError("bradley_terry aggregation", "stats", "scipy") from exc
    return np, minimize


def bradley_terry(
    comparisons: list[Comparison], ids: list[str], *, ties: Literal["half", "davidson"] = "half", prior: float = PRIOR
) -> BradleyTerry:
    np, minimize = _scipy()
    index = {cid: i for i, cid in enumerate(ids)}
    used = [c for c in comparisons if c.a in index and c.b in index and c.a != c.b and c.weight > 0]
    n = len(ids)
    if n == 0:
        return BradleyTerry({}, {}, ties)
    a = np.array([index[c.a] for c in used], dtype=int)
    b = np.array([index[c.b] for c in used], dtype=int)
    o = np.array([c.outcome for c in used], dtype=float)
    w = np.array([c.weight for c in used], dtype=float)

    if ties == "half":
        def loss(theta):
            d = theta[a] - theta[b]
            nll = np.sum(w * (o * np.logaddexp(0.0, -d) + (1.0 - o) * np.logaddexp(0.0, d)))
            p = 1.0 / (1.0 + np.exp(-d))
            g_d = -w * (o - p)
            grad = np.bincount(a, g_d, minlength=n) - np.bincount(b, g_d, minlength=n)
            return nll + 0.5 * prior * theta @ theta, grad + prior * theta

        fit = minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B")
        theta, nu = fit.x, None
    else:
        win, tie, lose = (o > 0.75).astype(float), ((o >= 0.25) & (o <= 0.75)).astype(float), (o < 0.25).astype(float)

        def loss(params):
            theta, g = params[:n], params[n]
            ta, tb = theta[a], theta[b]
            t_tie = g + 0.5 * (ta + tb)
            log_d = np.logaddexp(np.logaddexp(ta, tb), t_tie)
            ll = win * (ta - log_d) + lose * (tb - log_d) + tie * (t_tie - log_d)
            return -np.sum(w * ll) + 0.5 * prior * theta @ theta

        fit = minimize(loss, np.zeros(n + 1), method="L-BFGS-B")
        theta, nu = fit.x[:n], float(math.exp(fit.x[n]))
    theta = theta - theta.mean()
    expected = {}
    for i, cid in enumerate(ids):
        others = [j for j in range(n) if j != i]
        if not others:
            expected[cid] = 0.5
            continue
        if nu is None:
            probs = [1.0 / (1.0 + math.exp(theta[j] - theta[i])) for j in others]
        else:
            probs = []
            for j in others:
                si, sj, st = math.exp(theta[i]), math.exp(theta[j]), nu * math.exp(0.5 * (theta[i] + theta[j]))
                probs.append((si + 0.5 * st) / (si + sj + st))
        expected[cid] = sum(probs) / len(probs)
    return BradleyTerry(
        strength={cid: float(theta[i]) for i, cid in enumerate(ids)},
        expected=expected, ties=ties, tie_parameter=nu, comparisons=len(used), converged=bool(fit.success),
    )
