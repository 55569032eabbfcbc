"""Aggregation and pairing against hand-computed cases: veto, abstentions, ties, margin, identical texts."""

import json

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.ranking.pairs import make_pairs
from bestofn.config.panel import load_panel
from bestofn.records import Candidate, Message, Verdict, sha256_hex, text_id

PANEL = load_panel("default")  # weights: correctness .35, safety .15, helpfulness .3, instruction_following .2


def v(judge, cid, score=None, status="ok"):
    normalized = None if score is None else (score - 1) / 9
    return Verdict(judge=judge, kind="rubric", candidate_ids=[cid], status=status, score=score, normalized=normalized)


def full(cid, c, s, h, i):
    return [v("correctness", cid, c), v("safety", cid, s), v("helpfulness", cid, h), v("instruction_following", cid, i)]


def test_weighted_mean_by_hand():
    result = aggregate(PANEL, ["a"], full("a", 10, 10, 1, 1))
    # normalised 1, 1, 0, 0 with weights .35 .15 .3 .2 -> .5
    assert result.scores["a"] == pytest.approx(0.5)
    assert result.ranking == ["a"]


def test_abstentions_and_invalid_do_not_count_as_zero_and_are_reported():
    verdicts = [
        v("correctness", "a", 10), v("safety", "a", 10), v("helpfulness", "a", 10),
        v("instruction_following", "a", status="abstain"),
        v("correctness", "b", 10), v("safety", "b", 10), v("helpfulness", "b", 10),
        v("instruction_following", "b", status="invalid"),
    ]
    result = aggregate(PANEL, ["a", "b"], verdicts)
    assert result.scores == {"a": 1.0, "b": 1.0}
    assert result.stats["verdict_counts"]["a"]["abstain"] == 1
    assert result.stats["verdict_counts"]["b"]["invalid"] == 1


def test_quorum_makes_a_candidate_unrankable_not_guessed():
    verdicts = full("a", 5, 9, 5, 5) + [v("correctness", "b", 10), v("safety", "b", 10),
                                        v("helpfulness", "b", status="invalid"),
                                        v("instruction_following", "b", status="error")]
    result = aggregate(PANEL, ["a", "b"], verdicts)  # quorum 3: b has 2 valid verdicts
    assert result.scores["b"] is None
    assert result.ranking == ["a"]
    assert result.stats["unrankable"] == ["b"]


def test_safety_veto_ranks_below_every_safe_one_even_with_a_higher_score():
    verdicts = full("unsafe", 10, 3, 10, 10) + full("safe", 4, 9, 4, 4)
    result = aggregate(PANEL, ["unsafe", "safe"], verdicts)
    assert result.scores["unsafe"] > result.scores["safe"]
    assert result.ranking == ["safe", "unsafe"]
    assert result.stats["vetoed"] == ["unsafe"]


def test_invalid_safety_verdict_is_flagged_and_ranks_below_valid_safety_but_above_vetoed():
    verdicts = (
        full("safe", 3, 9, 3, 3)
        + [v("correctness", "flagged", 10), v("safety", "flagged", status="invalid"),
           v("helpfulness", "flagged", 10), v("instruction_following", "flagged", 10)]
        + full("vetoed", 10, 1, 10, 10)
    )
    result = aggregate(PANEL, ["vetoed", "flagged", "safe"], verdicts)
    assert result.ranking == ["safe", "flagged", "vetoed"]
    assert result.stats["safety_flagged"] == ["flagged"]
    # the typed tiers, which the stages read (the stats above repeat them for the Selection's JSON)
    assert result.vetoed == {"vetoed"} and result.safety_flagged == {"flagged"}
    assert result.unsafe == {"vetoed", "flagged"} and result.unrankable == frozenset()
    assert result.compare("safe", "flagged") == "first" and result.compare("vetoed", "flagged") == "second"


def test_compare_follows_the_ranking_and_ties_only_where_the_hash_decides():
    verdicts = full("a", 8, 8, 8, 8) + full("b", 8, 8, 8, 8) + full("c", 5, 8, 5, 5)
    verdicts += [v("correctness", "d", 9), v("safety", "d", 9), v("helpfulness", "d", 9)]  # d: 3 valid verdicts
    verdicts += [v("correctness", "e", 9)]  # below quorum
    result = aggregate(PANEL, ["a", "b", "c", "d", "e"], verdicts)
    assert result.compare("a", "b") == "tie" and result.ranking.index("a") != result.ranking.index("b")
    assert result.compare("a", "c") == "first" and result.compare("c", "a") == "second"
    assert result.compare("a", "e") is None and result.unrankable == {"e"}
    assert all(result.compare(x, y) != "second" for x, y in zip(result.ranking, result.ranking[1:]))


def test_ties_break_by_valid_count_then_seeded_hash_never_list_order():
    three = [v("correctness", "x", 8), v("safety", "x", 8), v("helpfulness", "x", 8)]
    four = full("y", 8, 8, 8, 8)
    result = aggregate(PANEL, ["x", "y"], three + four)
    assert result.scores["x"] == result.scores["y"]
    assert result.ranking == ["y", "x"]  # more valid verdicts first

    ids = ["p", "q", "r", "s"]
    verdicts = [vd for cid in ids for vd in full(cid, 7, 7, 7, 7)]
    for seed in range(3):
        expected = sorted(ids, key=lambda cid: sha256_hex("tiebreak", seed, cid))
        assert aggregate(PANEL, ids, verdicts, seed=seed).ranking == expected
        assert aggregate(PANEL, list(reversed(ids)), verdicts, seed=seed).ranking == expected


def _candidates(*texts):
    seen = {}
    out = []
    for i, t in enumerate(texts):
        cid = text_id(t)
        out.append(Candidate(id=cid, index=i, text=t, model="fake", duplicate_of=seen.get(cid)))
        seen.setdefault(cid, i)
    return out


def _pairs(cands, scores, margin, strategy="best-worst"):
    ranking = sorted([c.id for c in cands if c.duplicate_of is None], key=lambda cid: -scores[cid])
    return make_pairs(prompt=[Message(role="user", content="q")], candidates=cands, verdicts=[], scores=scores,
                      ranking=ranking, strategy=strategy, margin=margin, generator="fake", panel="default")


def test_pairs_need_the_margin_and_never_pair_identical_texts():
    cands = _candidates("good", "bad", "good")
    good, bad = cands[0].id, cands[1].id
    assert cands[2].duplicate_of == 0 and cands[2].id == good
    [pair] = _pairs(cands, {good: 0.8, bad: 0.3}, margin=0.1)
    assert pair.chosen[0].content == "good" and pair.rejected[0].content == "bad"
    assert pair.margin == pytest.approx(0.5) and pair.chosen[0].role == "assistant"
    assert _pairs(cands, {good: 0.8, bad: 0.75}, margin=0.1) == []
    assert _pairs(cands, {good: 0.5, bad: 0.5}, margin=0.0) == []  # a tie is never a pair
    assert _pairs(_candidates("same", "same"), {text_id("same"): 0.9}, margin=0.0) == []


def test_pair_ids_are_stable_and_strategies_differ():
    cands = _candidates("a", "b", "c")
    scores = {cands[0].id: 0.9, cands[1].id: 0.5, cands[2].id: 0.1}
    first = _pairs(cands, scores, 0.0)
    assert [p.id for p in first] == [p.id for p in _pairs(cands, scores, 0.0)]
    assert len(_pairs(cands, scores, 0.0, "all-pairs")) == 3
    assert len(_pairs(cands, scores, 0.45, "all-pairs")) == 1
    [best_random] = _pairs(cands, scores, 0.0, "best-random")
    assert best_random.chosen[0].content == "a" and best_random.strategy == "best-random"


async def test_a_vetoed_answer_is_never_the_chosen_side_of_a_logged_pair(tmp_path):
    """The safety judge vetoes the answer the other judges like best: no pair may prefer it."""
    from bestofn.pipeline.select import aselect
    from tests.fake_backend import FakeBackend

    def reply(score):
        return f'{{"reasoning": "r", "score": {score}}}'

    generator = FakeBackend(["unsafe but rated high", "safe and plain", "safe and poor"])
    # judges run judge by judge, candidate by candidate (the fake backend is not serial, but each judge's
    # calls are submitted in candidate order): correctness, safety, helpfulness, instruction_following
    judge = FakeBackend([reply(10), reply(6), reply(2),   # correctness
                         reply(1), reply(9), reply(9),    # safety: the first is vetoed
                         reply(10), reply(6), reply(2),   # helpfulness
                         reply(10), reply(6), reply(2)])  # instruction_following
    judge.serial = True  # keep the generate-then-judge order, so the replies above line up
    generator.serial = True
    selection = await aselect("q", n=3, model=generator, judge_model=judge, cache=False, strategy="all-pairs",
                              pair_margin=0.0)
    unsafe = selection.candidates[0].id
    assert selection.stats["vetoed"] == [unsafe] and selection.ranking[-1] == unsafe
    assert selection.pairs and all(p.chosen_id != unsafe for p in selection.pairs)


async def test_a_safety_flagged_answer_is_never_the_chosen_side_through_the_pipeline(loopback):
    """Over the loopback server: the safety judge's replies break its schema's range (invalid, so every answer
    is flagged); the other judges tell the answers apart. Answers still rank, but none may be a chosen side."""
    from bestofn.backends.vllm import VLLMServerBackend
    from bestofn.pipeline.select import aselect
    from tests.loopback import completion_body

    texts = ["Use soap and water.", "Rinse it.", "Scrub it with a brush and warm soapy water."]

    def hook(req):
        body = req.body or {}
        if not body.get("response_format"):
            out = completion_body("x", n=body.get("n", 1))
            for i, choice in enumerate(out["choices"]):
                choice["message"]["content"] = texts[i % len(texts)]
            return 200, out
        if "safety reviewer" in body["messages"][0]["content"]:  # prompts/safety.v1.md.j2
            return 200, completion_body('{"reasoning": "r", "score": 10000}')
        score = next(3 + 3 * k for k, t in enumerate(texts) if t in body["messages"][-1]["content"])
        return 200, completion_body(json.dumps({"reasoning": "scripted", "score": score}))

    loopback.hook = hook
    b = VLLMServerBackend("loopback", base_url=loopback.base_url, flavour="vllm")
    sel = await aselect("How do I clean a stain?", n=3, model=b, judge_model=b, cache=False, strategy="all-pairs",
                        pair_margin=0)
    assert sorted(sel.stats["safety_flagged"]) == sorted(c.id for c in sel.candidates)
    assert sel.best is not None and sel.best.text == texts[2] and len(sel.ranking) == 3
    assert sel.pairs == []
