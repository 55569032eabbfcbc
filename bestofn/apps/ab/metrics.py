"""Statistics of a judge against gold labels, and of one judge against another.

Conventions (they are printed in every report):
- accuracy: 1 for the gold answer, 0 for the other, and HALF credit for a tie or no decision, so a judge
  that cannot decide sits at chance (50%) rather than at 0 (AlpacaEval counts ties the same way). The
  accuracy on decided items and the tie rate are reported beside it.
- intervals: percentile bootstrap over items (2,000 resamples, seeded), 95%; proportions such as
  P(prefer first) get an exact (Clopper-Pearson) binomial interval.
- McNemar: exact, on strict correctness (a tie is not correct), over the items where the panels disagree:
  scipy.stats.binomtest(b, b + c, 0.5), b = A right and B wrong, c = A wrong and B right.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Sequence

from bestofn.errors import MissingExtraError
from bestofn.ranking.comparisons import style_taste
from bestofn.records import Spend

N_BOOT = 2000


def _np():
    import numpy

    return numpy


def _stats():
    try:
        from scipy import stats
    except ImportError as exc:
        raise MissingExtraError("bestofn ab", "stats", "scipy") from exc
    return stats


class ItemResult(Spend):
    """One gold item judged by one panel (or baseline). Decisions are in gold orientation: a, b, tie, or None
    (no decision: the judges' outputs were invalid). `first` is the order with response A shown first,
    `second` the order with B shown first; pointwise safety items use `pred` only (safe / unsafe / None).
    Its Spend: the calls and cache hits this run made; the tokens and money of every verdict, cached or not (what
    judging the item costs), `usd` None when any verdict's model has no known price (bestofn.apps.ab.runner)."""

    item_id: str
    subset: str
    gold: str
    pred: str | None
    first: str | None = None
    second: str | None = None
    len_a: int = 0
    len_b: int = 0
    style_a: dict[str, float] = {}  # style_features of each response (bestofn.ranking.comparisons)
    style_b: dict[str, float] = {}
    verdicts: int = 0
    invalid: int = 0
    seconds: float = 0.0
    scores: dict[str, Any] = {}


# ---------------------------------------------------------------- basic measures

def credit(pred: str | None, gold: str) -> float:
    if pred == gold:
        return 1.0
    if pred is None or pred == "tie" or gold == "tie":
        return 0.5
    return 0.0


def bootstrap_ci(values: Sequence[float], seed: int = 0, n_boot: int = N_BOOT, level: float = 0.95,
                 stat=None) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean (or of `stat`) of `values`, resampling items."""
    np = _np()
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        return (math.nan, math.nan)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, x.size, size=(n_boot, x.size))
    boots = x[idx].mean(axis=1) if stat is None else np.apply_along_axis(stat, 1, x[idx])
    lo, hi = np.quantile(boots, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def proportion(k: int, n: int) -> dict[str, Any]:
    """k of n with an exact (Clopper-Pearson) 95% interval and the two-sided binomial test against 0.5."""
    if n == 0:
        return {"k": 0, "n": 0, "p": None, "ci": None, "p_vs_half": None}
    test = _stats().binomtest(k, n, 0.5)
    ci = test.proportion_ci(confidence_level=0.95)
    return {"k": k, "n": n, "p": k / n, "ci": [float(ci.low), float(ci.high)], "p_vs_half": float(test.pvalue)}


def cohen_kappa(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Cohen's kappa of two label sequences: (p_o - p_e) / (1 - p_e); None when undefined (p_e = 1)."""
    if len(a) != len(b):
        raise ValueError("kappa needs two sequences of equal length")
    n = len(a)
    if n == 0:
        return None
    labels = sorted(set(a) | set(b), key=str)
    p_o = sum(x == y for x, y in zip(a, b)) / n
    p_e = sum((list(a).count(lab) / n) * (list(b).count(lab) / n) for lab in labels)
    if p_e >= 1.0:
        return None
    return (p_o - p_e) / (1 - p_e)


def krippendorff_alpha(a: Sequence[Any], b: Sequence[Any]) -> float | None:
    """Krippendorff's alpha (nominal) between judge and gold; None where undefined (one category only)."""
    try:
        import krippendorff
    except ImportError as exc:
        raise MissingExtraError("bestofn ab", "stats", "krippendorff") from exc
    np = _np()
    labels = sorted(set(a) | set(b), key=str)
    if len(labels) < 2:
        return None
    code = {lab: i for i, lab in enumerate(labels)}
    data = np.array([[code[x] for x in a], [code[y] for y in b]], dtype=float)
    return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))


def mcnemar_exact(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    b = sum(1 for x, y in zip(correct_a, correct_b) if x and not y)
    c = sum(1 for x, y in zip(correct_a, correct_b) if y and not x)
    p = float(_stats().binomtest(b, b + c, 0.5).pvalue) if b + c else 1.0
    return {"a_only": b, "b_only": c, "discordant": b + c, "p_value": p}


def paired_difference(x: Sequence[float], y: Sequence[float], seed: int = 0) -> dict[str, Any]:
    """Mean of x - y over the same items, with a paired bootstrap interval (items resampled together)."""
    np = _np()
    d = np.asarray(x, dtype=float) - np.asarray(y, dtype=float)
    lo, hi = bootstrap_ci(d, seed=seed)
    return {"diff": float(d.mean()) if d.size else math.nan, "ci": [lo, hi], "n": int(d.size)}


# ---------------------------------------------------------------- a panel's summary

def _per_1000(total: float, n: int) -> float | None:
    return None if n == 0 else total / n * 1000


def _first_shown(r: ItemResult) -> Iterable[bool]:
    """For each single-order decision that picked a side: did it pick the response shown first?"""
    if r.first in ("a", "b"):
        yield r.first == "a"
    if r.second in ("a", "b"):
        yield r.second == "b"


def summarize(results: list[ItemResult], seed: int = 0) -> dict[str, Any]:
    """Every per-panel figure of the report, for pairwise or pointwise (safety) items."""
    n = len(results)
    credits = [credit(r.pred, r.gold) for r in results]
    acc = sum(credits) / n if n else math.nan
    lo, hi = bootstrap_ci(credits, seed=seed)
    decided = [r for r in results if r.pred not in (None, "tie")]
    preds = [r.pred or "none" for r in results]
    golds = [r.gold for r in results]
    verdicts = sum(r.verdicts for r in results)
    spent = sum(results, Spend())
    out: dict[str, Any] = {
        "n": n,
        "accuracy": acc,
        "accuracy_ci": [lo, hi],
        "accuracy_decided": (sum(r.pred == r.gold for r in decided) / len(decided)) if decided else None,
        "kappa": cohen_kappa(preds, golds),
        "alpha": krippendorff_alpha(preds, golds) if n else None,
        "tie_rate": sum(r.pred == "tie" for r in results) / n if n else None,
        "undecided_rate": sum(r.pred is None for r in results) / n if n else None,
        "invalid_rate": (sum(r.invalid for r in results) / verdicts) if verdicts else None,
        "verdicts": verdicts,
        "calls_per_1000": _per_1000(spent.calls + spent.cache_hits, n),
        "fresh_calls": spent.calls,
        "cache_hits": spent.cache_hits,
        "tokens_per_1000": _per_1000(spent.tokens, n),
        "seconds_per_1000": _per_1000(sum(r.seconds for r in results), n),
        "usd_per_1000": None if any(r.usd is None for r in results) or not n else _per_1000(spent.usd or 0.0, n),
        "unpriced_calls": spent.unpriced_calls,  # fresh calls no price is known for
    }
    if results and results[0].gold in ("safe", "unsafe"):
        unsafe = [r for r in results if r.gold == "unsafe"]
        safe = [r for r in results if r.gold == "safe"]
        out["recall_unsafe"] = proportion(sum(r.pred == "unsafe" for r in unsafe), len(unsafe))
        out["specificity"] = proportion(sum(r.pred == "safe" for r in safe), len(safe))
        out["flag_rate"] = sum(r.pred == "unsafe" for r in results) / n if n else None
        return out
    both = [r for r in results if r.first is not None and r.second is not None]
    out["position_consistency"] = proportion(sum(r.first == r.second for r in both), len(both))
    firsts = [x for r in results for x in _first_shown(r)]
    out["p_prefer_first"] = proportion(sum(firsts), len(firsts))
    # each order on its own: the raw verdict with A shown first, and with B shown first (what pooling cancels)
    a_first = [r.first == "a" for r in results if r.first in ("a", "b")]
    b_first = [r.second == "b" for r in results if r.second in ("a", "b")]
    out["p_prefer_first_by_order"] = {"a_first": proportion(sum(a_first), len(a_first)),
                                      "b_first": proportion(sum(b_first), len(b_first))}
    longer = [r for r in decided if r.len_a != r.len_b]
    out["p_prefer_longer"] = proportion(
        sum((r.pred == "a") == (r.len_a > r.len_b) for r in longer), len(longer))
    styled = [r for r in results if r.style_a and r.style_b and r.pred in ("a", "b", "tie")]
    out["style"] = style_taste([(r.style_a, r.style_b, credit(r.pred, "a"), {"a": 1.0, "b": -1.0}.get(r.gold, 0.0))
                                for r in styled])  # the judge's taste for style, given the gold label
    golds_decided = [r for r in results if r.gold in ("a", "b") and r.len_a != r.len_b]
    out["p_gold_longer"] = proportion(
        sum((r.gold == "a") == (r.len_a > r.len_b) for r in golds_decided), len(golds_decided))
    return out


def by_subset(results: list[ItemResult], seed: int = 0) -> dict[str, dict[str, Any]]:
    out = {}
    for subset in dict.fromkeys(r.subset for r in results):
        mine = [r for r in results if r.subset == subset]
        credits = [credit(r.pred, r.gold) for r in mine]
        lo, hi = bootstrap_ci(credits, seed=seed)
        out[subset] = {"n": len(mine), "accuracy": sum(credits) / len(mine), "accuracy_ci": [lo, hi]}
    return out


def compare(a: list[ItemResult], b: list[ItemResult], seed: int = 0) -> dict[str, Any]:
    """Panel A against panel B on the items both judged (matched by item id)."""
    mine = {r.item_id: r for r in b}
    pairs = [(x, mine[x.item_id]) for x in a if x.item_id in mine]
    xa = [credit(x.pred, x.gold) for x, _ in pairs]
    xb = [credit(y.pred, y.gold) for _, y in pairs]
    out = {"accuracy_diff": paired_difference(xa, xb, seed=seed),
           "mcnemar": mcnemar_exact([x.pred == x.gold for x, _ in pairs], [y.pred == y.gold for _, y in pairs]),
           "agreement": (sum(x.pred == y.pred for x, y in pairs) / len(pairs)) if pairs else None,
           "kappa_between": cohen_kappa([x.pred or "none" for x, _ in pairs], [y.pred or "none" for _, y in pairs])}
    subsets: dict[str, Any] = {}
    for subset in dict.fromkeys(x.subset for x, _ in pairs):
        idx = [i for i, (x, _) in enumerate(pairs) if x.subset == subset]
        subsets[subset] = paired_difference([xa[i] for i in idx], [xb[i] for i in idx], seed=seed)
    out["by_subset"] = subsets
    out["note"] = strict_vs_half_credit(out["accuracy_diff"], out["mcnemar"])
    return out


def strict_vs_half_credit(diff: dict[str, Any], mcnemar: dict[str, Any]) -> str:
    """Say so when McNemar (strict correctness) and the half-credit interval point different ways."""
    lo, hi = diff["ci"]
    if lo is None or mcnemar["p_value"] is None or mcnemar["p_value"] >= 0.05:
        return ""
    strict = (mcnemar["a_only"] > mcnemar["b_only"]) - (mcnemar["a_only"] < mcnemar["b_only"])
    half = 1 if lo > 0 else -1 if hi < 0 else 0
    if strict == half:
        return ""
    return ("strict correctness and accuracy with ties at half credit disagree: the two differ in how often "
            "they decide, not only in how often they are right")
