"""Listwise judging: permutation validation and repair, shuffles that cancel position bias, RankGPT-style sliding
windows with several passes, and call counts (one per shuffle and window). Judge logic runs against a scripted
model; the permutation tools against plain callables."""

import json
import random

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.judging import JudgeInput
from bestofn.judging.listwise import ListwiseJudge, orders
from bestofn.judging.permutation import (
    labels, permutation_model, permutation_problem, repair, sliding_windows, to_indices, window_plan,
)
from bestofn.config.panel import JudgeConfig, Panel
from bestofn.records import Candidate, Message, text_id
from tests.oracle_backend import OracleBackend

QUALITY = {f"Answer number {w} to the question.": q for w, q in
           zip(["one", "two", "three", "four", "five", "six", "seven"], [3, 9, 1, 7, 5, 2, 8])}
ITEM = JudgeInput(prompt=[Message(role="user", content="Which answer is best?")], seed=5)


def candidates(texts):
    return [Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)]


def judge(backend, **config):
    return ListwiseJudge(config=JudgeConfig(name="rank", kind="listwise", rubric="listwise.v1", **config),
                         backend=backend, max_tokens=64)


def panel():
    return Panel(name="l", quorum=1, judge=[{"name": "rank", "kind": "listwise", "rubric": "listwise.v1"}])


# ---- permutations --------------------------------------------------------------------------------------------

def test_labels_and_schema_hold_the_grammar_to_the_labels_and_the_length():
    assert labels(3) == ["A", "B", "C"] and labels(28)[26:] == ["A1", "B1"]
    schema = permutation_model(["A", "B", "C"]).model_json_schema()["properties"]["ranking"]
    assert schema["items"]["enum"] == ["A", "B", "C"] and schema["minItems"] == schema["maxItems"] == 3
    assert "maxLength" not in json.dumps(schema)  # llama.cpp's grammar explodes on string maxLength


def test_permutation_validation_names_every_problem():
    assert permutation_problem(["C", "A", "B"], ["A", "B", "C"]) is None
    problem = permutation_problem(["A", "A", "Z"], ["A", "B", "C"])
    assert "'A' appears more than once" in problem and "'Z' is not one of the labels" in problem
    assert "missing 'B', 'C'" in problem


def test_repair_keeps_first_occurrences_and_appends_the_missing_in_shown_order():
    assert repair(["C", "C", "A", "Q"], ["A", "B", "C", "D"]) == ["C", "A", "B", "D"]
    assert repair([], ["A", "B"]) == ["A", "B"]
    assert to_indices(["C", "A", "B"], ["A", "B", "C"]) == [2, 0, 1]


async def test_sliding_windows_sort_the_whole_list_not_only_the_top():
    async def rank(chunk):
        return sorted(range(len(chunk)), key=lambda i: -chunk[i])

    for trial in range(200):
        rng = random.Random(trial)
        n, window = rng.randint(2, 30), rng.randint(2, 8)
        step = rng.randint(1, window - 1)
        items = rng.sample(range(1000), n)
        result = await sliding_windows(items, rank, window=window, step=step)
        assert result.order == sorted(items, reverse=True), (n, window, step)
        assert result.calls == len(result.windows)
    # one pass (RankGPT's usual setting) only settles the top window - step positions
    items = list(range(20))
    one = await sliding_windows(items, rank, window=8, step=4, max_passes=1)
    assert one.order[:4] == [19, 18, 17, 16] and one.order != sorted(items, reverse=True) and not one.sorted_fully
    full = await sliding_windows(items, rank, window=8, step=4)
    assert full.order == sorted(items, reverse=True) and full.passes > 1
    assert window_plan(20, 8, 4) == [(12, 8), (8, 8), (4, 8), (0, 8)]


async def test_sliding_windows_stop_early_on_a_sorted_list_and_honour_top_n():
    calls = []

    async def rank(chunk):
        calls.append(len(chunk))
        return sorted(range(len(chunk)), key=lambda i: -chunk[i])

    result = await sliding_windows(list(range(20, 0, -1)), rank, window=6, step=3)
    assert result.passes == 1 and len(calls) == len(window_plan(20, 6, 3))  # nothing changed: one pass
    top = await sliding_windows(list(range(30)), rank, window=6, step=3, top_n=3)
    assert top.order[:3] == [29, 28, 27] and top.passes == 1


async def test_sliding_windows_reject_a_rank_function_that_returns_no_permutation():
    async def bad(chunk):
        return [0] * len(chunk)

    with pytest.raises(ValueError, match="not a permutation"):
        await sliding_windows(list(range(5)), bad, window=3, step=1)


# ---- the judge -----------------------------------------------------------------------------------------------

def test_orders_are_a_seeded_shuffle_its_reverse_then_more():
    cands = candidates(list(QUALITY)[:4])
    first, second, third = orders(cands, 3, seed=1, judge="rank")
    assert second == first[::-1] and sorted(c.id for c in third) == sorted(c.id for c in cands)
    assert orders(cands, 3, seed=1, judge="rank") == [first, second, third]  # reproducible
    assert orders(list(reversed(cands)), 1, seed=1, judge="rank")[0] == first  # never list order


async def test_one_call_per_shuffle_and_a_perfect_ranker_gets_borda_scores():
    oracle = OracleBackend(QUALITY)
    cands = candidates(list(QUALITY)[:4])
    verdicts = await judge(oracle, shuffles=3).judge(ITEM, cands)
    assert oracle.calls == 3
    assert [v.kind for v in verdicts] == ["listwise"] * 4 and all(v.status == "ok" for v in verdicts)
    best_first = sorted(cands, key=lambda c: -QUALITY[c.text])
    by_id = {v.candidate_ids[0]: v for v in verdicts}
    assert [by_id[c.id].normalized for c in best_first] == pytest.approx([1, 2 / 3, 1 / 3, 0])
    result = aggregate(panel(), [c.id for c in cands], verdicts)
    assert result.ranking == [c.id for c in best_first]
    assert result.stats["bias"]["shuffle_agreement"]["rank"]["kendall_tau"] == 1.0


async def test_shuffle_and_reverse_cancel_a_pure_position_bias():
    oracle = OracleBackend(QUALITY, bias="first")  # always "the order shown"
    cands = candidates(list(QUALITY)[:5])
    verdicts = await judge(oracle, shuffles=2).judge(ITEM, cands)
    assert oracle.calls == 2
    assert [v.normalized for v in verdicts] == pytest.approx([0.5] * 5)
    agreement = aggregate(panel(), [c.id for c in cands], verdicts).stats["bias"]["shuffle_agreement"]["rank"]
    assert agreement["kendall_tau"] == -1.0 and agreement["position_rank_spearman"] == 1.0


async def test_a_broken_permutation_is_reasked_then_repaired_never_trusted():
    oracle = OracleBackend(QUALITY, broken=2)  # the first reply and its re-ask repeat a label
    cands = candidates(list(QUALITY)[:3])
    verdicts = await judge(oracle, shuffles=1).judge(ITEM, cands)
    assert oracle.calls == 2  # the call and one re-ask
    reask = oracle.requests[1][0][-1].content
    assert "exactly once" in reask and "JSON schema" in reask
    details = verdicts[0].details
    assert details["repaired"] == 1 and details["reasked"] == 1
    # the repaired order is a full permutation: every candidate has a distinct rank
    assert sorted(v.details["ranks"][0] for v in verdicts) == [0, 1, 2]


async def test_a_reask_that_fixes_the_permutation_is_used_as_is():
    oracle = OracleBackend(QUALITY, broken=1)
    cands = candidates(list(QUALITY)[:3])
    verdicts = await judge(oracle, shuffles=1).judge(ITEM, cands)
    assert oracle.calls == 2 and verdicts[0].details["repaired"] == 0
    best = max(cands, key=lambda c: QUALITY[c.text])
    assert next(v for v in verdicts if v.candidate_ids == [best.id]).normalized == 1.0


async def test_unparseable_replies_make_invalid_verdicts():
    oracle = OracleBackend(QUALITY, invalid=2)
    cands = candidates(list(QUALITY)[:3])
    verdicts = await judge(oracle, shuffles=1).judge(ITEM, cands)
    assert oracle.calls == 2 and {v.status for v in verdicts} == {"invalid"}
    assert "max_tokens" in verdicts[0].reason


async def test_windows_when_candidates_do_not_fit_one_call_sort_all_of_them():
    oracle = OracleBackend(QUALITY)
    cands = candidates(list(QUALITY))  # 7 candidates, windows of 4 moving by 2
    verdicts = await judge(oracle, shuffles=2, window=4, step=2).judge(ITEM, cands)
    runs = verdicts[0].details["runs"]
    assert oracle.calls == sum(r["windows"] for r in runs) == verdicts[0].details["calls"]
    assert all(r["passes"] > 1 and r["sorted_fully"] for r in runs)
    assert max(len(oracle.shown(m)) for m, _ in oracle.requests) == 4
    best_first = sorted(cands, key=lambda c: -QUALITY[c.text])
    by_id = {v.candidate_ids[0]: v for v in verdicts}
    assert [by_id[c.id].normalized for c in best_first] == pytest.approx([1 - i / 6 for i in range(7)], abs=1e-6)


async def test_one_candidate_abstains_without_a_call():
    oracle = OracleBackend(QUALITY)
    verdicts = await judge(oracle).judge(ITEM, candidates(list(QUALITY)[:1]))
    assert oracle.calls == 0 and verdicts[0].status == "abstain"


async def test_candidates_that_do_not_fit_the_budget_switch_to_sliding_windows(monkeypatch):
    from bestofn.judging.budget import prompt_tokens

    oracle = OracleBackend(QUALITY)
    cands = candidates(list(QUALITY))
    j = judge(oracle, shuffles=1)
    size = {}
    for k in (4, 7):
        tokens, _ = await prompt_tokens(oracle, j.prompt_for(ITEM, cands[:k], labels(k)), 0)
        size[k] = tokens
    monkeypatch.setenv("BESTOFN_JUDGE_MAX_INPUT_TOKENS", str((size[4] + size[7]) // 2))
    verdicts = await j.judge(ITEM, cands)
    run = verdicts[0].details["runs"][0]
    assert 2 <= run["window"] < 7 and run["windows"] > 1 and oracle.calls == run["windows"]
    assert max(len(oracle.shown(m)) for m, _ in oracle.requests) == run["window"]
    best_first = sorted(cands, key=lambda c: -QUALITY[c.text])
    by_id = {v.candidate_ids[0]: v for v in verdicts}
    assert [by_id[c.id].normalized for c in best_first] == pytest.approx([1 - i / 6 for i in range(7)], abs=1e-6)

    monkeypatch.setenv("BESTOFN_JUDGE_MAX_INPUT_TOKENS", "50")  # not even two fit: invalid, nothing sent
    before = oracle.calls
    verdicts = await j.judge(ITEM, cands)
    assert {v.status for v in verdicts} == {"invalid"} and "budget" in verdicts[0].reason and oracle.calls == before
