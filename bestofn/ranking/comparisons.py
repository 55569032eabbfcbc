"""Pairwise comparisons -> win rates and Bradley-Terry strengths. Never calls a model.

A Comparison is one judged pair: a's points (1 win, 0.5 tie, 0 loss, or a soft win in between: a pairwise
logprob judge's sigmoid of its pooled margin) and a weight (the judge's weight).
They come straight from pairwise verdicts, or are induced from a judge's scores on two candidates (so that
Bradley-Terry can also combine pointwise and listwise judges: a judge that scores x above y is a win for x).

Bradley-Terry: P(i beats j) = s_i / (s_i + s_j), fitted by maximum likelihood (scipy's L-BFGS) with a weak
Gaussian prior on the log-strengths, which keeps them finite when a candidate won (or lost) every comparison
and barely moves them otherwise. Ties count as half a win each (`ties="half"`), or follow Davidson's model
(`ties="davidson"`): P(i beats j) = s_i / (s_i + s_j + nu sqrt(s_i s_j)), P(tie) = nu sqrt(s_i s_j) / (same),
with nu fitted too. A soft win o counts as o of a win and 1 - o of a loss (the likelihood's expectation; under
`half` that is the cross-entropy hard outcomes use too), an outcome of exactly 0.5 as a tie. A candidate's
score is its expected win rate against the others under the fit (0 to 1).

Style control (Arena-Hard's): with each candidate's style (`style_features`: length in words, markdown headers,
bold spans, list items), each comparison carries per feature the normalised difference (f_a - f_b) / (f_a + f_b),
scaled to unit root-mean-square over the comparisons, and P(a beats b) = sigmoid(theta_a - theta_b + x . beta).
The coefficients beta (same prior) take what style explains, and the ranking reads theta alone, so a judge's taste
for long or formatted answers does not decide the pick. Within one prompt style and quality are confounded (a
candidate has one strength and one style): the shared beta takes the part of the strengths that style explains
across the comparisons, much as `length_control = "regress"` does for pointwise scores.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass, field
from typing import Literal

from bestofn.errors import MissingExtraError
from bestofn.records import Verdict

PRIOR = 1e-3  # precision of the Gaussian prior on log-strengths (and on the style coefficients)
STYLE_FEATURES = ("length", "headers", "bold", "list_items")
_HEADER = re.compile(r"(?m)^ {0,3}#{1,6}[ \t]+\S")
_BOLD = re.compile(r"\*\*(?=\S)[^*\n]+?\*\*|__(?=\S)[^_\n]+?__")
_LIST_ITEM = re.compile(r"(?m)^[ \t]*(?:[-*+]|\d{1,3}[.)])[ \t]+\S")


@dataclass(frozen=True)
class Comparison:
    a: str
    b: str
    outcome: float  # a's points: 1 win, 0.5 tie, 0 loss; a soft win in between
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


def style_features(text: str) -> dict[str, float]:
    """The style covariates of one answer: its length in words, and its markdown headers, bold spans and list items."""
    return {"length": float(len(text.split())), "headers": float(len(_HEADER.findall(text))),
            "bold": float(len(_BOLD.findall(text))), "list_items": float(len(_LIST_ITEM.findall(text)))}


def _style_matrix(np, used: list[Comparison], style: dict[str, dict[str, float]]):
    """(features kept, per comparison the scaled normalised differences, each feature's scale): a feature that no
    comparison's two candidates differ in is left out."""
    def diff(x: float, y: float) -> float:
        return (x - y) / (x + y) if x + y > 0 else 0.0

    raw = np.array([[diff(style.get(c.a, {}).get(k, 0.0), style.get(c.b, {}).get(k, 0.0)) for k in STYLE_FEATURES]
                    for c in used], dtype=float).reshape(len(used), len(STYLE_FEATURES))
    scale = np.sqrt((raw ** 2).mean(axis=0)) if len(used) else np.zeros(len(STYLE_FEATURES))
    keep = scale > 1e-12
    return [k for k, on in zip(STYLE_FEATURES, keep) if on], raw[:, keep] / scale[keep], scale[keep]


def style_taste(rows: list[tuple[dict[str, float], dict[str, float], float, float]],
                prior: float = PRIOR) -> dict | None:
    """How far a judge's decisions follow style beyond the truth (`bestofn ab`): over items (a's style_features,
    b's, a's points 1 / 0.5 / 0, the gold label +1 for a, -1 for b, 0 for none), the logistic fit
    P(a) = sigmoid(gold_coefficient * gold + x . beta), x the scaled normalised style differences of style control.
    None with fewer than two items."""
    if len(rows) < 2:
        return None
    np, minimize = _scipy()
    used = [Comparison(f"{i}:a", f"{i}:b", o) for i, (_, _, o, _) in enumerate(rows)]
    style = {f"{i}:{side}": feats for i, row in enumerate(rows) for side, feats in zip("ab", row[:2])}
    names, x, scale = _style_matrix(np, used, style)
    design = np.column_stack([np.array([row[3] for row in rows], dtype=float), x])
    o = np.array([row[2] for row in rows], dtype=float)

    def loss(beta):
        d = design @ beta
        p = 1.0 / (1.0 + np.exp(-d))
        nll = np.sum(o * np.logaddexp(0.0, -d) + (1.0 - o) * np.logaddexp(0.0, d))
        return nll + 0.5 * prior * beta @ beta, design.T @ (p - o) + prior * beta

    fit = minimize(loss, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B")
    return {"coefficients": {name: round(float(b), 6) for name, b in zip(names, fit.x[1:])},
            "gold_coefficient": round(float(fit.x[0]), 6), "items": len(rows),
            "feature_scale": {name: round(float(v), 6) for name, v in zip(names, scale)},
            "constant": [name for name in STYLE_FEATURES if name not in names]}


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
    comparisons: list[Comparison], ids: list[str], *, ties: Literal["half", "davidson"] = "half", prior: float = PRIOR,
    style: dict[str, dict[str, float]] | None = None,
) -> BradleyTerry:
    """`style` (candidate id -> style_features): fit with style control; `extra["style"]` holds the coefficients."""
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
    names, x, scale = _style_matrix(np, used, style) if style is not None else ([], np.zeros((len(used), 0)), [])
    k = len(names)

    if ties == "half":
        def loss(params):
            theta, beta = params[:n], params[n:]
            d = theta[a] - theta[b] + x @ beta
            nll = np.sum(w * (o * np.logaddexp(0.0, -d) + (1.0 - o) * np.logaddexp(0.0, d)))
            p = 1.0 / (1.0 + np.exp(-d))
            g_d = -w * (o - p)
            grad = np.concatenate([np.bincount(a, g_d, minlength=n) - np.bincount(b, g_d, minlength=n), x.T @ g_d])
            return nll + 0.5 * prior * params @ params, grad + prior * params

        fit = minimize(loss, np.zeros(n + k), jac=True, method="L-BFGS-B")
        theta, beta, nu = fit.x[:n], fit.x[n:], None
    else:
        tie = (o == 0.5).astype(float)  # a soft win o: o of a win and 1 - o of a loss
        win, lose = (1.0 - tie) * o, (1.0 - tie) * (1.0 - o)

        def loss(params):
            theta, g, beta = params[:n], params[n], params[n + 1:]
            t_tie = g + 0.5 * (theta[a] + theta[b])
            ta, tb = theta[a] + 0.5 * (x @ beta), theta[b] - 0.5 * (x @ beta)  # style moves the win odds only
            log_d = np.logaddexp(np.logaddexp(ta, tb), t_tie)
            ll = win * (ta - log_d) + lose * (tb - log_d) + tie * (t_tie - log_d)
            return -np.sum(w * ll) + 0.5 * prior * (theta @ theta + beta @ beta)

        fit = minimize(loss, np.zeros(n + 1 + k), method="L-BFGS-B")
        theta, nu, beta = fit.x[:n], float(math.exp(fit.x[n])), fit.x[n + 1:]
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
    extra = {} if style is None else {"style": {
        "coefficients": {name: round(float(b), 6) for name, b in zip(names, beta)},
        "feature_scale": {name: round(float(s), 6) for name, s in zip(names, scale)},
        "constant": [name for name in STYLE_FEATURES if name not in names],  # no comparison's pair differs in it
    }}
    return BradleyTerry(
        strength={cid: float(theta[i]) for i, cid in enumerate(ids)},
        expected=expected, ties=ties, tie_parameter=nu, comparisons=len(used), converged=bool(fit.success),
        extra=extra,
    )
