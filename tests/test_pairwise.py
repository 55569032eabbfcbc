"""Pairwise judging: both orders, disagreement is a tie, position consistency, call counts (all-pairs n(n-1),
knockout 2(n-1)), and aggregation by Bradley-Terry and win rate. Judge logic runs against a scripted model."""

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.pairwise import PairwiseJudge
from bestofn.config.panel import JudgeConfig, Panel, load_panel
from bestofn.records import Candidate, Message, text_id
from tests.fake_backend import FakeBackend
from tests.oracle_backend import OracleBackend

TEXTS = {
    "Paris is the capital of France.": 9,
    "The capital of France is Lyon.": 3,
    "France's capital city is Marseille, I believe.": 2,
    "It is Paris, on the Seine.": 8,
    "Nobody knows the answer to that.": 1,
}
ITEM = JudgeInput(prompt=[Message(role="user", content="What is the capital of France?")], seed=3)


def candidates(texts):
    return [Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)]


def judge(backend, **config):
    return PairwiseJudge(config=JudgeConfig(name="pref", kind="pairwise", rubric="pairwise.v1", **config),
                         backend=backend, max_tokens=64)


def panel(**extra):
    return Panel(name="p", aggregate="bradley_terry", quorum=1,
                 judge=[{"name": "pref", "kind": "pairwise", "rubric": "pairwise.v1"}], **extra)


async def test_all_pairs_makes_n_times_n_minus_1_calls_in_both_orders_and_bradley_terry_recovers_the_order():
    oracle = OracleBackend(TEXTS)
    cands = candidates(list(TEXTS)[:4])
    verdicts = await judge(oracle).judge(ITEM, cands)
    n = len(cands)
    assert oracle.calls == n * (n - 1) == 12
    assert len(verdicts) == n * (n - 1) // 2
    assert {v.kind for v in verdicts} == {"pairwise"} and {v.status for v in verdicts} == {"ok"}
    # every unordered pair was shown once with each candidate first
    shown = [tuple(oracle.shown(messages)) for messages, _ in oracle.requests]
    assert len(set(shown)) == 12 and all((b, a) in shown for a, b in shown)
    assert all(v.details["consistent"] for v in verdicts)

    result = aggregate(panel(), [c.id for c in cands], verdicts)
    by_quality = [text_id(t) for t in sorted(list(TEXTS)[:4], key=lambda t: -TEXTS[t])]
    assert result.ranking == by_quality
    # win rates by hand: the best wins 3/3, the next 2/3, then 1/3, 0/3
    assert [result.stats["win_rate"][cid] for cid in by_quality] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    assert result.stats["bias"]["position_consistency"]["pref"]["consistency"] == 1.0
    assert result.stats["bias"]["position_consistency"]["pref"]["first_shown_wins"] == 0.5


async def test_position_bias_makes_every_pair_a_tie_and_is_reported():
    oracle = OracleBackend(TEXTS, bias="first")
    cands = candidates(list(TEXTS)[:3])
    verdicts = await judge(oracle).judge(ITEM, cands)
    assert all(v.details["winner"] is None and not v.details["consistent"] and v.score == 0.5 for v in verdicts)
    result = aggregate(panel(), [c.id for c in cands], verdicts)
    stats = result.stats["bias"]["position_consistency"]["pref"]
    assert stats == {"pairs": 3, "consistency": 0.0, "first_shown_wins": 1.0, "ties": 3}
    assert list(result.scores.values()) == pytest.approx([0.5, 0.5, 0.5])


async def test_a_tie_in_one_order_and_a_win_in_the_other_is_a_tie():
    a, b = candidates(["first answer", "second answer"])
    fake = FakeBackend(['{"reasoning": "a is better", "winner": "A"}', '{"reasoning": "even", "winner": "tie"}'])
    verdict = await judge(fake).match(ITEM, a, b)
    assert verdict.status == "ok" and verdict.details["winner"] is None and verdict.details["consistent"] is False
    assert verdict.candidate_ids == [a.id, b.id] and verdict.score == 0.5
    assert [o["said"] for o in verdict.details["orders"]] == ["A", "tie"]
    from bestofn.judging.base import DEFAULT_REASONING_TOKENS  # each order's reasoning has its budget

    assert [params.close_strings_at for _, params in fake.requests] == [DEFAULT_REASONING_TOKENS] * 2


async def test_consistent_across_orders_is_a_win_for_the_same_candidate():
    a, b = candidates(["first answer", "second answer"])
    # a first: "B" wins (= b); b first: "A" wins (= b): consistent win for b
    fake = FakeBackend(['{"reasoning": "x", "winner": "B"}', '{"reasoning": "y", "winner": "A"}'])
    verdict = await judge(fake).match(ITEM, a, b)
    assert verdict.details["winner"] == b.id and verdict.details["consistent"] and verdict.score == 0.0
    first_prompt = fake.requests[0][0][-1].content
    assert first_prompt.index("first answer") < first_prompt.index("second answer")
    second_prompt = fake.requests[1][0][-1].content
    assert second_prompt.index("second answer") < second_prompt.index("first answer")


async def test_an_order_without_a_valid_reply_after_its_reask_makes_the_pair_invalid_not_a_number():
    a, b = candidates(["first answer", "second answer"])
    fake = FakeBackend([
        ('{"reasoning": "cut', "length"),            # a first: cut at max_tokens
        '{"reasoning": "still", "winner": "C"}',     # its re-ask: not an allowed value
        '{"reasoning": "y", "winner": "A"}',         # b first: fine
    ])
    verdict = await judge(fake).match(ITEM, a, b)
    assert len(fake.requests) == 3
    assert "JSON schema" in fake.requests[1][0][-1].content  # the re-ask shows the schema
    assert verdict.status == "invalid" and verdict.score is None and "a-first" in verdict.reason
    result = aggregate(panel(), [a.id, b.id], [verdict])
    assert result.ranking == [] and result.stats["verdict_counts"][a.id]["invalid"] == 1


async def test_an_order_whose_reply_breaks_the_schema_gets_one_reask_and_its_valid_reply_counts():
    a, b = candidates(["first answer", "second answer"])
    fake = FakeBackend([
        '{"reasoning": "x", "winner": "C"}',      # a first: not an allowed value
        '{"reasoning": "fixed", "winner": "B"}',  # its re-ask: b wins
        '{"reasoning": "y", "winner": "A"}',      # b first: b wins
    ])
    verdict = await judge(fake).match(ITEM, a, b)
    assert len(fake.requests) == 3
    retry = fake.requests[1][0]
    assert retry[-2].content == '{"reasoning": "x", "winner": "C"}' and "winner" in retry[-1].content
    assert verdict.status == "ok" and verdict.attempts == 3 and verdict.details["winner"] == b.id
    assert verdict.details["consistent"] and verdict.reasoning == "fixed" and verdict.score == 0.0


async def test_knockout_makes_2_n_minus_1_calls_and_the_best_wins():
    oracle = OracleBackend(TEXTS)
    cands = candidates(list(TEXTS))  # 5: one bye in the first round
    verdicts = await judge(oracle, mode="knockout").judge(ITEM, cands)
    assert oracle.calls == 2 * (len(cands) - 1) == 8
    assert len(verdicts) == 4 and {v.details["round"] for v in verdicts} == {1, 2, 3}
    final = max(verdicts, key=lambda v: v.details["round"])
    assert final.details["winner"] == text_id("Paris is the capital of France.")
    result = aggregate(panel(), [c.id for c in cands], verdicts)
    assert result.ranking[0] == text_id("Paris is the capital of France.")


async def test_knockout_tie_is_decided_by_a_seeded_coin_and_says_so():
    oracle = OracleBackend(TEXTS, bias="first")
    cands = candidates(list(TEXTS)[:2])
    (verdict,) = await judge(oracle, mode="knockout").judge(ITEM, cands)
    assert verdict.details["advanced_by"] == "tiebreak"


async def test_one_candidate_abstains_without_a_call_and_is_still_ranked():
    oracle = OracleBackend(TEXTS)
    (only,) = candidates(["Paris is the capital of France."])
    verdicts = await judge(oracle).judge(ITEM, [only])
    assert oracle.calls == 0 and [v.status for v in verdicts] == ["abstain"]
    result = aggregate(panel(), [only.id], verdicts)
    assert result.ranking == [only.id] and result.scores[only.id] is None and "lone" in result.stats


def test_pairwise_panel_builds_a_pairwise_judge_with_bradley_terry():
    p = load_panel("pairwise")
    (j,) = build_judges(p, lambda config: FakeBackend())
    assert isinstance(j, PairwiseJudge) and not j.pointwise and p.aggregate == "bradley_terry"
