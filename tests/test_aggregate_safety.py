"""The ranking's safety rules at their edges, asserted on rankings and scores only: the safety veto, the quorum and
the content-free demotion, for every aggregation method, and their order against each other.

Order of a ranking, top to bottom: safe candidates with content, safety-flagged (no valid safety verdict) ones
with content, content-free ones ("demote"), vetoed ones; unrankable ones (below quorum) are not in it."""

from __future__ import annotations

import asyncio
import json

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.config.panel import load_panel
from bestofn.records import Message, Verdict
from bestofn.pipeline.select import aselect
from tests.loopback import completion_body

PANEL = load_panel("default")  # quorum 3; safety veto: a raw safety score below 4
JUDGES = ["correctness", "safety", "helpfulness", "instruction_following"]
METHODS = ["weighted_mean", "median", "borda", "bradley_terry"]


def v(judge: str, cid: str, score: float | None = None, status: str = "ok") -> Verdict:
    normalized = None if score is None else (score - 1) / 9
    return Verdict(judge=judge, kind="rubric", candidate_ids=[cid], status=status, score=score, normalized=normalized)


def rated(cid: str, score: float, safety: float | None = None) -> list[Verdict]:
    """Every judge gives `score`, the safety judge `safety` (default: `score`)."""
    return [v(j, cid, safety if j == "safety" and safety is not None else score) for j in JUDGES]


def with_method(method: str, **update):
    return PANEL.model_copy(update={"aggregate": method, **update})


# ---------------------------------------------------------------------------------------------- safety veto


@pytest.mark.parametrize("method", METHODS)
def test_a_vetoed_candidate_ranks_below_every_safe_one_whatever_its_score(method):
    verdicts = rated("unsafe", 10, safety=3) + rated("poor", 4) + rated("fair", 6)
    result = aggregate(with_method(method), ["unsafe", "poor", "fair"], verdicts)
    assert result.ranking == ["fair", "poor", "unsafe"]


def test_the_veto_is_strictly_below_the_threshold():
    at = aggregate(PANEL, ["edge", "plain"], rated("edge", 10, safety=4) + rated("plain", 5))
    assert at.ranking == ["edge", "plain"]  # 4 is not below 4: ranked by its score
    under = aggregate(PANEL, ["edge", "plain"], rated("edge", 10, safety=3) + rated("plain", 5))
    assert under.ranking == ["plain", "edge"]


def test_one_safety_verdict_below_the_threshold_vetoes_whatever_the_others_say():
    verdicts = rated("mixed", 10, safety=9) + [v("safety", "mixed", 2)] + rated("plain", 5)
    assert aggregate(PANEL, ["mixed", "plain"], verdicts).ranking == ["plain", "mixed"]


def test_one_safety_verdict_that_is_not_valid_flags_it_even_beside_a_valid_one():
    verdicts = rated("half", 10, safety=9) + [v("safety", "half", status="invalid")] + rated("checked", 5)
    assert aggregate(PANEL, ["half", "checked"], verdicts).ranking == ["checked", "half"]


@pytest.mark.parametrize("status", ["missing", "invalid", "error", "abstain"])
def test_a_candidate_without_a_valid_safety_verdict_ranks_below_the_checked_ones(status):
    unchecked = [v(j, "unchecked", 10) for j in JUDGES if j != "safety"]
    if status != "missing":
        unchecked.append(v("safety", "unchecked", status=status))
    verdicts = unchecked + rated("checked", 5) + rated("vetoed", 10, safety=1)
    result = aggregate(PANEL, ["unchecked", "checked", "vetoed"], verdicts)
    assert result.ranking == ["checked", "unchecked", "vetoed"]  # above the vetoed one


async def test_a_vetoed_answer_is_never_best_nor_chosen_through_the_pipeline(loopback):
    """Over the loopback server: the unsafe answer gets 10 from every judge but safety (2); it loses."""
    texts = ["Mix bleach and ammonia for a stronger cleaner.", "Use soap and water.", "Rinse it."]
    marks = {texts[0]: (10, 2), texts[1]: (6, 9), texts[2]: (3, 9)}  # (every judge, safety)

    def hook(req):
        body = req.body or {}
        if not body.get("response_format"):
            out = completion_body("x", n=body.get("n", 1))
            for i, choice in enumerate(out["choices"]):
                choice["message"]["content"] = texts[i % len(texts)]
            return 200, out
        shown = body["messages"][-1]["content"]
        score, safety = next(m for t, m in marks.items() if t in shown)
        is_safety = "safety reviewer" in body["messages"][0]["content"]  # prompts/safety.v1.md.j2
        return 200, completion_body(json.dumps({"reasoning": "scripted", "score": safety if is_safety else score}))

    loopback.hook = hook
    b = VLLMServerBackend("loopback", base_url=loopback.base_url, flavour="vllm")
    sel = await aselect([Message(role="user", content="How do I clean a stain?")], n=3, model=b, judge_model=b,
                        cache=False, strategy="all-pairs", pair_margin=0)
    unsafe = next(c.id for c in sel.candidates if c.text == texts[0])
    assert sel.scores[unsafe] == max(sel.scores.values())  # the judges liked it best...
    assert sel.best is not None and sel.best.text == texts[1] and sel.ranking[-1] == unsafe  # ...it ranks last
    assert sel.pairs and all(p.chosen_id != unsafe for p in sel.pairs)


# ---------------------------------------------------------------------------------------------- quorum


@pytest.mark.parametrize("quorum", [1, 2, 3, 4])
def test_a_candidate_needs_quorum_valid_verdicts_and_only_valid_ones_count(quorum):
    """Candidate ck has k valid verdicts; its other judges answered invalid, error or abstain."""
    failed = ["invalid", "error", "abstain"]
    verdicts, ids = [], []
    for k in range(1, 5):
        cid = f"c{k}"
        ids.append(cid)
        order = ["safety"] + [j for j in JUDGES if j != "safety"]  # safety first: no flag interplay
        for i, judge in enumerate(order):
            verdicts.append(v(judge, cid, 5 + k) if i < k else v(judge, cid, status=failed[i % 3]))
    result = aggregate(PANEL.model_copy(update={"quorum": quorum}), ids, verdicts)
    rankable = [f"c{k}" for k in range(4, 0, -1) if k >= quorum]  # more valid verdicts score higher here
    assert result.ranking == rankable
    assert all((result.scores[cid] is None) == (cid not in rankable) for cid in ids)


@pytest.mark.parametrize("method", METHODS)
def test_below_quorum_is_unrankable_for_every_method_however_high_its_verdicts(method):
    verdicts = [v("correctness", "sparse", 10), v("safety", "sparse", 10)] + rated("full", 3)
    result = aggregate(with_method(method), ["sparse", "full"], verdicts)  # quorum 3: "sparse" has 2
    assert result.ranking == ["full"] and result.scores["sparse"] is None


# ---------------------------------------------------------------------------------------------- content-free


@pytest.mark.parametrize("method", METHODS)
def test_a_lone_colon_rated_ten_ranks_below_paris_rated_four(method):
    """The "master key": the judges are fooled, the ranking is not; a one-word answer is content."""
    verdicts = rated(":", 10) + rated("Paris", 4)
    texts = {":": ":", "Paris": "Paris"}
    demoted = aggregate(with_method(method), [":", "Paris"], verdicts, texts=texts)
    assert demoted.ranking == ["Paris", ":"]
    vetoed = aggregate(with_method(method, content_free="veto"), [":", "Paris"], verdicts, texts=texts)
    assert vetoed.ranking == ["Paris"] and vetoed.scores[":"] is None
    flagged = aggregate(with_method(method, content_free="flag"), [":", "Paris"], verdicts, texts=texts)
    assert flagged.ranking == [":", "Paris"]  # "flag" only records it


def test_the_tiers_in_order_safe_then_flagged_then_content_free_then_vetoed():
    texts = {"safe": "Paris.", "flagged": "It is Paris.", "empty": "Thought process:", "vetoed": "Paris, idiot."}
    flagged = [v(j, "flagged", 9) for j in JUDGES if j != "safety"] + [v("safety", "flagged", status="invalid")]
    verdicts = rated("safe", 4) + flagged + rated("empty", 10) + rated("vetoed", 10, safety=1)
    ids = ["vetoed", "empty", "flagged", "safe"]
    assert aggregate(PANEL, ids, verdicts, texts=texts).ranking == ["safe", "flagged", "empty", "vetoed"]


async def test_paris_is_best_over_a_colon_through_the_pipeline(loopback):
    """Over the loopback server: every judge gives ":" 10 and "Paris" 4."""
    def hook(req):
        body = req.body or {}
        if not body.get("response_format"):
            out = completion_body("x", n=body.get("n", 1))
            for i, choice in enumerate(out["choices"]):
                choice["message"]["content"] = [":", "Paris"][i % 2]
            return 200, out
        shown = body["messages"][-1]["content"]
        return 200, completion_body(json.dumps({"reasoning": "scripted", "score": 4 if "Paris" in shown else 10}))

    loopback.hook = hook
    b = VLLMServerBackend("loopback", base_url=loopback.base_url, flavour="vllm")
    sel = await aselect([Message(role="user", content="What is the capital of France?")], n=2, model=b,
                        judge_model=b, cache=False)
    colon = next(c.id for c in sel.candidates if c.text == ":")
    assert sel.scores[colon] > sel.scores[sel.best.id]  # fooled judges...
    assert sel.best.text == "Paris" and sel.ranking == [sel.best.id, colon]  # ...unfooled ranking
