"""bestofn.ab.metrics and baselines against hand-computed cases and against scipy / krippendorff."""

from __future__ import annotations

import math

import pytest

from bestofn.apps.ab.baselines import combine, pairwise_baselines, pointwise_baselines
from bestofn.apps.ab.gold import GoldPair, GoldPoint
from bestofn.apps.ab.metrics import (
    ItemResult, bootstrap_ci, by_subset, cohen_kappa, compare, credit, krippendorff_alpha, mcnemar_exact,
    paired_difference, proportion, summarize,
)

np = pytest.importorskip("numpy")
stats = pytest.importorskip("scipy.stats")
krippendorff = pytest.importorskip("krippendorff")


def test_credit_gives_half_for_ties_and_no_decision():
    assert credit("a", "a") == 1.0
    assert credit("b", "a") == 0.0
    assert credit("tie", "a") == 0.5
    assert credit(None, "b") == 0.5
    assert credit("tie", "tie") == 1.0
    assert credit("a", "tie") == 0.5
    assert credit("unsafe", "safe") == 0.0 and credit("safe", "safe") == 1.0


def test_cohen_kappa_hand_computed():
    # 2x2 table: yes/yes 20, yes/no 5, no/yes 10, no/no 15 (n=50)
    a = ["y"] * 20 + ["y"] * 5 + ["n"] * 10 + ["n"] * 15
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    p_o = 35 / 50
    p_e = (25 / 50) * (30 / 50) + (25 / 50) * (20 / 50)
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    assert cohen_kappa(["x", "y"], ["x", "y"]) == pytest.approx(1.0)
    assert cohen_kappa(["x", "x"], ["x", "x"]) is None  # p_e = 1: undefined
    with pytest.raises(ValueError):
        cohen_kappa(["x"], [])


def test_kappa_with_three_categories_hand_computed():
    a = ["a", "a", "b", "b", "tie", "a"]
    b = ["a", "b", "b", "tie", "tie", "a"]
    p_o = 4 / 6
    p_e = (3 / 6) * (2 / 6) + (2 / 6) * (2 / 6) + (1 / 6) * (2 / 6)
    assert cohen_kappa(a, b) == pytest.approx((p_o - p_e) / (1 - p_e))


def test_krippendorff_alpha_matches_hand_computation():
    # nominal alpha for two coders: 1 - D_o / D_e on the coincidence matrix
    a = ["y", "y", "n", "n", "y", "n", "y", "y"]
    b = ["y", "n", "n", "n", "y", "y", "y", "y"]
    values = a + b
    n = len(values)
    counts = {v: values.count(v) for v in set(values)}
    d_o = sum(x != y for x, y in zip(a, b)) * 2 / n
    d_e = sum(counts[x] * counts[y] for x in counts for y in counts if x != y) / (n * (n - 1))
    assert krippendorff_alpha(a, b) == pytest.approx(1 - d_o / d_e)
    assert krippendorff_alpha(["x"], ["x"]) is None


def test_bootstrap_ci_is_seeded_and_agrees_with_scipy():
    rng = np.random.default_rng(7)
    x = (rng.random(120) < 0.6).astype(float)
    lo, hi = bootstrap_ci(x, seed=3)
    assert (lo, hi) == bootstrap_ci(x, seed=3)  # seeded: the same interval every run
    assert lo < x.mean() < hi
    ref = stats.bootstrap((x,), np.mean, method="percentile", n_resamples=4000, random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.03) and hi == pytest.approx(ref.high, abs=0.03)
    # and both close to the normal approximation for a proportion
    se = math.sqrt(x.mean() * (1 - x.mean()) / len(x))
    assert lo == pytest.approx(x.mean() - 1.96 * se, abs=0.03)
    assert bootstrap_ci([1.0] * 10) == (1.0, 1.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))


def test_proportion_is_exact_clopper_pearson():
    p = proportion(7, 20)
    assert p["p"] == 0.35
    lo = stats.beta.ppf(0.025, 7, 14)
    hi = stats.beta.ppf(0.975, 8, 13)
    assert p["ci"] == pytest.approx([lo, hi], abs=1e-9)
    assert p["p_vs_half"] == pytest.approx(2 * sum(math.comb(20, k) for k in range(8)) / 2**20)
    assert proportion(0, 0)["p"] is None


def test_mcnemar_exact_hand_computed():
    # A right / B wrong on 8 items, A wrong / B right on 2, both right on 5, both wrong on 3
    a = [True] * 8 + [False] * 2 + [True] * 5 + [False] * 3
    b = [False] * 8 + [True] * 2 + [True] * 5 + [False] * 3
    m = mcnemar_exact(a, b)
    assert (m["a_only"], m["b_only"], m["discordant"]) == (8, 2, 10)
    exact = 2 * sum(math.comb(10, k) for k in range(0, 3)) / 2**10  # two-sided, symmetric at p = 0.5
    assert m["p_value"] == pytest.approx(exact)
    assert m["p_value"] == pytest.approx(0.109375)
    assert mcnemar_exact([True, False], [True, False])["p_value"] == 1.0  # no discordant pairs


def test_paired_difference_uses_the_same_items():
    x = [1, 1, 1, 0, 1, 0.5, 1, 1]
    y = [0, 1, 0, 0, 1, 0.5, 0, 1]
    d = paired_difference(x, y, seed=0)
    assert d["diff"] == pytest.approx(3 / 8) and d["n"] == 8
    assert d["ci"][0] <= d["diff"] <= d["ci"][1]
    assert d["ci"][0] >= 0  # every item's difference is >= 0, so every resample's mean is too


def _r(gold, pred, first=None, second=None, la=10, lb=20, subset="s", **kw) -> ItemResult:
    return ItemResult(item_id=f"{subset}{gold}{pred}{first}{second}{la}{lb}{kw}", subset=subset, gold=gold,
                      pred=pred, first=first, second=second, len_a=la, len_b=lb, **kw)


def test_summarize_hand_computed():
    rs = [
        _r("a", "a", "a", "a", la=30, lb=10, verdicts=2, calls=2, prompt_tokens=100, completion_tokens=10, seconds=1.0),
        _r("b", "a", "a", "a", la=30, lb=10, verdicts=2, calls=2, prompt_tokens=100, completion_tokens=10, seconds=1.0),
        _r("b", "tie", "a", "b", la=10, lb=30, verdicts=2, invalid=1, calls=3, cache_hits=1, seconds=2.0),
        _r("a", None, None, None, la=10, lb=10, verdicts=2, invalid=2, calls=2, seconds=1.0),
    ]
    s = summarize(rs, seed=0)
    assert s["n"] == 4
    assert s["accuracy"] == pytest.approx((1 + 0 + 0.5 + 0.5) / 4)
    assert s["accuracy_decided"] == pytest.approx(0.5)
    assert s["tie_rate"] == 0.25 and s["undecided_rate"] == 0.25
    assert s["invalid_rate"] == pytest.approx(3 / 8)
    # both orders known on 3 items; they agree on 2
    assert s["position_consistency"]["k"] == 2 and s["position_consistency"]["n"] == 3
    # single-order decisions that picked a side: a,a,a,a,a,b -> first shown picked in: (a),(b-first: a no)...
    # item1: first=a (first shown) yes, second=a (b shown first) no; item2 same; item3: a yes, b yes
    assert s["p_prefer_first"]["k"] == 4 and s["p_prefer_first"]["n"] == 6
    # decided items with unequal lengths: items 1 and 2, both chose the longer (a, 30 chars)
    assert s["p_prefer_longer"]["k"] == 2 and s["p_prefer_longer"]["n"] == 2
    assert s["calls_per_1000"] == pytest.approx((2 + 2 + 4 + 2) / 4 * 1000)
    assert s["fresh_calls"] == 9 and s["cache_hits"] == 1
    assert s["tokens_per_1000"] == pytest.approx(220 / 4 * 1000)
    assert s["seconds_per_1000"] == pytest.approx(5.0 / 4 * 1000)
    assert s["usd_per_1000"] is None  # no price known
    assert s["kappa"] == pytest.approx(cohen_kappa(["a", "a", "tie", "none"], ["a", "b", "b", "a"]))


def test_summarize_pointwise_safety():
    rs = [_r("unsafe", "unsafe"), _r("unsafe", "safe"), _r("safe", "safe"), _r("safe", "safe"), _r("safe", None)]
    s = summarize(rs)
    assert s["recall_unsafe"]["k"] == 1 and s["recall_unsafe"]["n"] == 2
    assert s["specificity"]["k"] == 2 and s["specificity"]["n"] == 3
    assert s["accuracy"] == pytest.approx((1 + 0 + 1 + 1 + 0.5) / 5)
    assert "p_prefer_first" not in s


def test_compare_and_by_subset():
    a = [_r("a", "a", subset="x"), _r("b", "b", subset="x"), _r("a", "a", subset="y"), _r("b", "a", subset="y")]
    b = [r.model_copy(update={"pred": p}) for r, p in zip(a, ["b", "a", "b", "b"])]  # right only on the last
    c = compare(a, b)
    assert c["accuracy_diff"]["diff"] == pytest.approx(0.75 - 0.25)
    assert c["mcnemar"]["a_only"] == 3 and c["mcnemar"]["b_only"] == 1
    assert c["agreement"] == 0.0
    assert set(c["by_subset"]) == {"x", "y"} and c["by_subset"]["x"]["diff"] == pytest.approx(1.0)
    subs = by_subset(a)
    assert subs["x"]["accuracy"] == 1.0 and subs["y"]["accuracy"] == 0.5 and subs["y"]["n"] == 2


def test_combine_votes_over_the_two_orders():
    assert combine("a", "a") == "a"
    assert combine("a", "b") == "tie"
    assert combine("a", "tie") == "a"
    assert combine(None, "b") == "b"
    assert combine(None, None) is None


def _pair(i: int, a: str, b: str, label: str) -> GoldPair:
    return GoldPair(id=f"p{i}", subset="s", prompt="q", response_a=a, response_b=b, label=label, source=f"t:{i}")


def test_baselines_behave_as_their_names_say():
    items = [_pair(0, "long answer here", "short", "a"), _pair(1, "tiny", "a much longer one", "a"),
             _pair(2, "same", "same", "b"), _pair(3, "xx", "yyyy", "b")]
    base = pairwise_baselines(items, seed=0)
    longer = {r.item_id: r.pred for r in base["prefer-longer"]}
    assert longer == {"p0": "a", "p1": "b", "p2": "tie", "p3": "b"}
    s_first = summarize(base["prefer-first"])
    assert all(r.pred == "tie" for r in base["prefer-first"])  # both orders disagree: always a tie
    assert s_first["p_prefer_first"]["p"] == 1.0 and s_first["position_consistency"]["p"] == 0.0
    assert s_first["accuracy"] == 0.5
    s_longer = summarize(base["prefer-longer"])
    assert s_longer["p_prefer_longer"]["p"] == 1.0 and s_longer["position_consistency"]["p"] == 1.0
    assert s_longer["accuracy"] == pytest.approx((1 + 0 + 0.5 + 1) / 4)
    again = pairwise_baselines(items, seed=0)["random"]
    assert [r.model_dump() for r in again] == [r.model_dump() for r in base["random"]]  # seeded
    many = [_pair(i, f"answer {i}", f"other {i * 7}", "a") for i in range(400)]
    rnd = summarize(pairwise_baselines(many, seed=1)["random"])
    assert 0.4 < rnd["p_prefer_first"]["p"] < 0.6 and 0.4 < rnd["accuracy"] < 0.6


def test_pointwise_baselines():
    items = [GoldPoint(id=f"x{i}", subset="s", prompt="q", response="r", label="safe" if i % 4 else "unsafe",
                       source="t") for i in range(40)]
    base = pointwise_baselines(items, seed=0)
    assert summarize(base["always-safe"])["accuracy"] == pytest.approx(30 / 40)
    assert summarize(base["always-safe"])["kappa"] == pytest.approx(0.0)
    assert {r.pred for r in base["random"]} == {"safe", "unsafe"}


def test_a_strict_mcnemar_that_points_another_way_than_the_half_credit_interval_is_noted():
    from bestofn.apps.ab.metrics import strict_vs_half_credit

    significant = {"a_only": 34, "b_only": 14, "p_value": 0.0055}
    assert "disagree" in strict_vs_half_credit({"ci": [-0.033, 0.041]}, significant)  # interval includes 0
    assert "disagree" in strict_vs_half_credit({"ci": [-0.27, -0.14]}, significant)  # opposite directions
    assert strict_vs_half_credit({"ci": [0.01, 0.09]}, significant) == ""  # same direction
    assert strict_vs_half_credit({"ci": [-0.033, 0.041]}, {**significant, "p_value": 0.2}) == ""  # not significant
