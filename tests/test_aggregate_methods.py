"""Aggregation methods against hand-computed cases: Bradley-Terry (ties as half wins and Davidson), win rate,
Borda, median; the verifier gate; length control; bias statistics."""

import math

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.ranking.bias import control_length, judge_agreement, kendall_tau, spearman
from bestofn.ranking.comparisons import Comparison as C
from bestofn.ranking.comparisons import bradley_terry, from_scores, win_rates
from bestofn.config.panel import LengthControl, Panel, load_panel
from bestofn.records import Verdict


def rubric(judge, cid, score, scale=(1, 10), status="ok"):
    low, high = scale
    return Verdict(judge=judge, kind="rubric", candidate_ids=[cid], status=status, score=score,
                   normalized=None if score is None else (score - low) / (high - low))


def pair(a, b, points, judge="pref"):
    return Verdict(judge=judge, kind="pairwise", candidate_ids=[a, b], status="ok", score=points, normalized=points,
                   details={"winner": a if points == 1 else b if points == 0 else None, "consistent": points != 0.5})


def verifier(cid, fraction=None, status="ok"):
    return Verdict(judge="verify", kind="verifier", candidate_ids=[cid], status=status, score=fraction,
                   normalized=fraction)


# ---- Bradley-Terry and win rate ------------------------------------------------------------------------------

def test_bradley_terry_two_players_three_wins_to_one():
    fit = bradley_terry([C("a", "b", 1)] * 3 + [C("a", "b", 0)], ["a", "b"])
    # MLE: s_a / (s_a + s_b) = 3/4, so s_a / s_b = 3
    assert math.exp(fit.strength["a"] - fit.strength["b"]) == pytest.approx(3, rel=0.01)
    assert fit.expected == pytest.approx({"a": 0.75, "b": 0.25}, abs=0.002)


def test_bradley_terry_chain_by_hand():
    # a beats b 2-1 and b beats c 2-1; no a-c games: each edge is fitted exactly, strengths 4 : 2 : 1
    comps = [C("a", "b", 1), C("a", "b", 1), C("b", "a", 1), C("b", "c", 1), C("b", "c", 1), C("c", "b", 1)]
    fit = bradley_terry(comps, ["a", "b", "c"])
    s = {k: math.exp(v) for k, v in fit.strength.items()}
    assert s["a"] / s["b"] == pytest.approx(2, rel=0.01) and s["b"] / s["c"] == pytest.approx(2, rel=0.01)
    # expected win rate of a: mean of 4/6 (vs b) and 4/5 (vs c)
    assert fit.expected["a"] == pytest.approx((4 / 6 + 4 / 5) / 2, abs=0.003)


def test_bradley_terry_ties_as_half_wins_and_davidson():
    one_win_one_tie = [C("a", "b", 1), C("a", "b", 0.5)]
    half = bradley_terry(one_win_one_tie, ["a", "b"], ties="half")
    assert math.exp(half.strength["a"] - half.strength["b"]) == pytest.approx(3, rel=0.01)  # 1.5 : 0.5
    # Davidson, two players, 2 wins, 1 loss, 2 ties: s_a / s_b = 2 and nu = ties / sqrt(wins_a * wins_b) = sqrt 2
    comps = [C("a", "b", 1)] * 2 + [C("a", "b", 0)] + [C("a", "b", 0.5)] * 2
    dav = bradley_terry(comps, ["a", "b"], ties="davidson")
    assert math.exp(dav.strength["a"] - dav.strength["b"]) == pytest.approx(2, rel=0.01)
    assert dav.tie_parameter == pytest.approx(math.sqrt(2), rel=0.01)
    assert dav.expected["a"] == pytest.approx(0.4 + 0.5 * 0.4, abs=0.002)  # P(win) 2/5, P(tie) 2/5


def test_bradley_terry_stays_finite_when_one_candidate_wins_everything():
    fit = bradley_terry([C("a", "b", 1), C("a", "c", 1), C("b", "c", 1)], ["a", "b", "c"])
    assert all(math.isfinite(x) for x in fit.strength.values()) and fit.converged
    assert fit.expected["a"] > fit.expected["b"] > fit.expected["c"]


def test_win_rate_by_hand_with_ties_and_weights():
    comps = [C("a", "b", 1), C("a", "c", 0.5), C("b", "c", 0, weight=2)]
    # a: 1 + 0.5 of 2; b: 0 + 0 of 1 + 2 weighted games; c: 0.5 + 2 of 3
    assert win_rates(comps, ["a", "b", "c", "d"]) == {"a": 0.75, "b": 0.0, "c": 2.5 / 3, "d": None}


def test_scores_induce_comparisons_for_bradley_terry_over_pointwise_judges():
    table = {"a": {"j": 0.9}, "b": {"j": 0.5}, "c": {"j": 0.5}}
    comps = from_scores(table, {"j": 2.0}, {"j"})
    assert {(c.a, c.b, c.outcome, c.weight) for c in comps} == {
        ("a", "b", 1.0, 2.0), ("a", "c", 1.0, 2.0), ("b", "c", 0.5, 2.0)}


def test_bradley_terry_panel_on_rubric_verdicts_and_on_pairwise_verdicts():
    panel = load_panel("default").model_copy(update={"aggregate": "bradley_terry"})
    verdicts = [rubric(j, cid, s) for cid, s in (("x", 9), ("y", 5), ("z", 2))
                for j in ("correctness", "safety", "helpfulness", "instruction_following")]
    result = aggregate(panel, ["z", "y", "x"], verdicts)
    assert result.ranking == ["x", "y", "z"] and result.stats["bradley_terry"]["comparisons"] == 12

    pairwise = load_panel("pairwise")
    verdicts = [pair("a", "b", 1, "preference"), pair("b", "c", 1, "preference"), pair("c", "a", 0, "preference")]
    result = aggregate(pairwise, ["a", "b", "c"], verdicts)
    assert result.ranking == ["a", "b", "c"]
    assert result.stats["win_rate"] == {"a": 1.0, "b": 0.5, "c": 0.0}
    assert result.stats["per_judge"]["b"] == {"preference": 0.5}
    assert result.scores["a"] > 0.9 and result.scores["c"] < 0.1  # expected win rates under the fit


def test_pairwise_win_rate_feeds_weighted_mean_panels():
    panel = Panel(name="wm", quorum=1, judge=[{"name": "pref", "kind": "pairwise", "rubric": "pairwise.v1"}])
    result = aggregate(panel, ["a", "b", "c"], [pair("a", "b", 1), pair("a", "c", 0.5), pair("b", "c", 0)])
    assert result.scores == {"a": 0.75, "b": 0.0, "c": 0.75}
    assert result.stats["bias"]["position_consistency"]["pref"]["ties"] == 1


# ---- Borda, median ---------------------------------------------------------------------------------------------

def test_borda_by_hand():
    panel = Panel(name="b", aggregate="borda", quorum=1, judge=[
        {"name": "j1", "rubric": "correctness.v1", "weight": 1.0},
        {"name": "j2", "rubric": "correctness.v1", "weight": 3.0},
    ])
    verdicts = [rubric("j1", "a", 9), rubric("j1", "b", 5), rubric("j1", "c", 5),
                rubric("j2", "a", 2), rubric("j2", "b", 8), rubric("j2", "c", 4)]
    result = aggregate(panel, ["a", "b", "c"], verdicts)
    # a: j1 beats 2 -> 2, j2 beats 0 -> 0: (1*2 + 3*0) / (1*2 + 3*2) = 2/8
    # b: j1 beats 0 + tie .5 -> .5, j2 beats 2 -> 2: (.5 + 6) / 8
    # c: j1 .5, j2 beats a -> 1: (.5 + 3) / 8
    assert result.scores == pytest.approx({"a": 2 / 8, "b": 6.5 / 8, "c": 3.5 / 8})
    assert result.ranking == ["b", "c", "a"]


def test_median_by_hand():
    panel = load_panel("default").model_copy(update={"aggregate": "median"})
    verdicts = [rubric("correctness", "a", 10), rubric("safety", "a", 1), rubric("helpfulness", "a", 4),
                rubric("instruction_following", "a", 7)]
    assert aggregate(panel, ["a"], verdicts).scores["a"] == pytest.approx((3 / 9 + 6 / 9) / 2)


# ---- the verifier gate ---------------------------------------------------------------------------------------

def gated_panel():
    return load_panel("verifier-first")


def four(cid, s):
    return [rubric(j, cid, s) for j in ("correctness", "safety", "helpfulness", "instruction_following")]


def test_verifiers_gate_and_rubric_judges_order_the_survivors():
    verdicts = (four("fails", 10) + [verifier("fails", 0.5)]
                + four("passes_low", 5) + [verifier("passes_low", 1.0)]
                + four("passes_high", 8) + [verifier("passes_high", 1.0)]
                + four("nothing_to_check", 6) + [verifier("nothing_to_check", status="abstain")]
                + four("fails_worse", 10) + [verifier("fails_worse", 0.0)]
                + four("broken_check", 9) + [verifier("broken_check", status="error")])
    ids = ["fails", "passes_low", "passes_high", "nothing_to_check", "fails_worse", "broken_check"]
    result = aggregate(gated_panel(), ids, verdicts)
    assert result.ranking == ["passes_high", "nothing_to_check", "passes_low", "broken_check", "fails", "fails_worse"]
    assert result.stats["gate"] == {"passed": ["passes_low", "passes_high", "nothing_to_check"],
                                    "unchecked": ["broken_check"], "failed": ["fails", "fails_worse"]}
    # the gate does not score: a gate verdict is not one of the quorum's verdicts
    assert "verify" not in result.stats["per_judge"]["fails"]
    assert result.scores["fails"] == pytest.approx(1.0)


# ---- length control and bias statistics ----------------------------------------------------------------------

def test_length_regression_removes_the_linear_trend_on_log_length():
    texts = {"a": "w " * 2, "b": "w " * 4, "c": "w " * 8}  # 2, 4, 8 words: log2 1, 2, 3
    scores = {"a": 0.4, "b": 0.6, "c": 0.8}  # exactly +0.2 per doubling
    adjusted, report = control_length(scores, texts, LengthControl(method="regress"))
    assert report["slope"] == pytest.approx(0.2)
    assert adjusted == pytest.approx({"a": 0.6, "b": 0.6, "c": 0.6})
    assert report["raw_scores"] == scores and report["lengths"] == {"a": 2, "b": 4, "c": 8}


def test_length_penalty_by_hand_and_it_can_change_the_best():
    texts = {"short": "w " * 10, "long": "w " * 40, "mid": "w " * 20}
    scores = {"short": 0.7, "long": 0.75, "mid": 0.7}
    adjusted, report = control_length(scores, texts, LengthControl(method="penalty", strength=0.1))
    # median log2 length is log2 20; long is 1 doubling above (-0.1), short 1 below (+0.1)
    assert adjusted == pytest.approx({"short": 0.8, "long": 0.65, "mid": 0.7})
    assert report["best_changed"] is True


def test_length_control_in_a_panel_is_reported_per_selection():
    panel = load_panel("default").model_copy(update={"length_control": LengthControl(method="regress")})
    verdicts = four("a", 4) + four("b", 6) + four("c", 8)
    texts = {"a": "w " * 2, "b": "w " * 4, "c": "w " * 8}
    result = aggregate(panel, ["a", "b", "c"], verdicts, texts=texts)
    report = result.stats["length_control"]
    assert report["slope"] > 0 and len(set(result.scores.values())) == 1
    assert result.stats["bias"]["length_score_spearman"] == 1.0  # measured on the raw scores


def test_rank_statistics_by_hand():
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1)
    assert spearman([1, 2], [1, 2]) is None
    assert kendall_tau([1, 2, 3], [1, 3, 2]) == pytest.approx(1 / 3)


def test_krippendorff_alpha_between_judges():
    agree = {"a": {"j1": 0.1, "j2": 0.1}, "b": {"j1": 0.5, "j2": 0.5}, "c": {"j1": 0.9, "j2": 0.9}}
    assert judge_agreement(agree, ["j1", "j2"])["krippendorff_alpha"] == pytest.approx(1.0)
    # hand-computed interval alpha: values a (0, 1), b (1, 0): D_o = 1, D_e = 4/6 * ... -> alpha = -0.5
    disagree = {"a": {"j1": 0.0, "j2": 1.0}, "b": {"j1": 1.0, "j2": 0.0}}
    assert judge_agreement(disagree, ["j1", "j2"])["krippendorff_alpha"] == pytest.approx(-0.5)
    assert judge_agreement(agree, ["j1"])["krippendorff_alpha"] is None


def test_selection_stats_report_agreement_and_counts():
    panel = load_panel("default")
    verdicts = (four("a", 9) + four("b", 3) + [rubric("safety", "c", None, status="invalid")]
                + [rubric(j, "c", 5) for j in ("correctness", "helpfulness", "instruction_following")])
    result = aggregate(panel, ["a", "b", "c"], verdicts, texts={"a": "one two three", "b": "one", "c": "one two"})
    assert result.stats["verdict_totals"]["safety"] == {"ok": 2, "invalid": 1, "error": 0, "abstain": 0}
    assert result.stats["bias"]["judge_agreement"]["krippendorff_alpha"] is not None
    assert result.stats["bias"]["length_score_spearman"] == pytest.approx(1.0)
