"""The A/B runner's decisions (aggregation and single-order reading) with scripted judge replies: unit tests of
parsing and aggregation, so the fake backend is allowed here. The real model runs in test_ab_e2e.py."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from bestofn.apps.ab import run_ab
from bestofn.apps.ab.gold import GoldPair, GoldSet
from bestofn.apps.ab.runner import PanelRunner, RunSettings, read_journal, single_order
from bestofn.config.panel import load_panel
from bestofn.records import Verdict
from tests.fake_backend import FakeBackend

PANELS = Path(__file__).parent / "ab_panels"
pytest.importorskip("scipy")


def _rubric(judge: str, cid: str, score: float | None, status: str = "ok") -> Verdict:
    return Verdict(judge=judge, kind="rubric", candidate_ids=[cid], status=status, score=score,
                   normalized=None if score is None else (score - 1) / 9)


def _pairwise(a: str, b: str, said_a_first: str | None, said_b_first: str | None) -> Verdict:
    pick = lambda said, first, second: {"A": first, "B": second}.get(said or "")  # noqa: E731
    w1, w2 = pick(said_a_first, a, b), pick(said_b_first, b, a)
    consistent = w1 == w2
    points = 1.0 if consistent and w1 == a else 0.0 if consistent and w1 == b else 0.5
    ok = said_a_first is not None and said_b_first is not None
    return Verdict(judge="preference", kind="pairwise", candidate_ids=[a, b], status="ok" if ok else "invalid",
                   score=points if ok else None, normalized=points if ok else None,
                   details={"winner": w1 if consistent else None, "consistent": consistent, "orders": [
                       {"first": a, "second": b, "said": said_a_first, "winner": w1},
                       {"first": b, "second": a, "said": said_b_first, "winner": w2}]})


def test_decide_follows_the_panel_ranking_rules():
    runner = PanelRunner(load_panel("default"), RunSettings(cache=False))
    texts = {"x": "one", "y": "two"}
    full = lambda cid, s, safety=9: [_rubric(j, cid, s) for j in  # noqa: E731
                                     ("correctness", "helpfulness", "instruction_following")] + [
        _rubric("safety", cid, safety)]
    assert runner.decide("x", "y", full("x", 8) + full("y", 5), texts) == "first"
    assert runner.decide("x", "y", full("x", 5) + full("y", 5), texts) == "tie"
    assert runner.decide("y", "x", full("x", 8) + full("y", 5), texts) == "second"
    # a vetoed answer loses whatever its score
    assert runner.decide("x", "y", full("x", 10, safety=2) + full("y", 3), texts) == "second"
    # below quorum (3 valid verdicts) on one side: no decision
    partial = [_rubric("correctness", "x", 9), _rubric("helpfulness", "x", None, "invalid")]
    assert runner.decide("x", "y", partial + full("y", 3), texts) is None


def test_single_order_reads_each_order_of_a_pairwise_verdict():
    v = _pairwise("a", "b", "A", "A")  # picks whatever is shown first: inconsistent, a tie overall
    assert v.normalized == 0.5
    forward, backward = single_order([v], "a"), single_order([v], "b")
    assert forward[0].normalized == 1.0 and backward[0].normalized == 0.0
    runner = PanelRunner(load_panel("pairwise"), RunSettings(cache=False))
    texts = {"a": "1", "b": "2"}
    assert runner.decide("a", "b", [v], texts) == "tie"
    assert runner.decide("a", "b", forward, texts) == "first"
    assert runner.decide("b", "a", backward, texts) == "first"  # B shown first wins that order
    half = _pairwise("a", "b", "B", None)  # the b-first order had no valid reply
    assert half.status == "invalid"
    assert single_order([half], "a")[0].normalized == 0.0 and single_order([half], "b")[0].status == "invalid"
    rubric = [_rubric("correctness", "a", 7)]
    assert single_order(rubric, "a") == rubric  # pointwise verdicts: order cannot reach them
    odd = Verdict(judge="j", kind="pairwise", candidate_ids=["a", "b"], status="ok", score=1, normalized=1)
    assert single_order([odd], "a") is None  # no record of single orders: not measurable


def _gold(n: int = 6) -> GoldSet:
    items = [GoldPair(id=f"g{i}", subset="s" if i % 2 else "t", prompt=f"question {i}", response_a=f"answer a{i}",
                      response_b=f"answer b{i} which is longer", label="a" if i % 3 else "b", source=f"x:{i}")
             for i in range(n)]
    return GoldSet(name="toy", kind="pairwise", items=items)


def test_a_first_position_judge_is_exposed(tmp_path):
    """A pairwise judge that always answers "A" is perfectly position-biased: every order picks the answer
    shown first, every pair is a tie, and the report's flags say so."""
    always_a = FakeBackend([json.dumps({"reasoning": "A looks fine.", "winner": "A"})] * 100, spec="fake:always-a")
    scores = FakeBackend([json.dumps({"reasoning": "ok", "score": 5})] * 100, spec="fake:five")
    result = asyncio.run(_run(tmp_path, always_a, scores))
    figures = result.figures
    b = figures["summary"]["B: pairwise"]
    assert b["p_prefer_first"]["p"] == 1.0 and b["p_prefer_first"]["n"] == 12
    assert b["position_consistency"]["p"] == 0.0 and b["tie_rate"] == 1.0 and b["accuracy"] == 0.5
    assert any("position bias" in f for f in figures["flags"]["B: pairwise"])
    assert any("coin flip" in f for f in figures["flags"]["B: pairwise"])
    assert len(always_a.requests) == 12  # 6 pairs, both orders, one call each
    a = figures["summary"]["A: ab-correctness"]  # equal rubric scores: every pair a tie, consistent
    assert a["tie_rate"] == 1.0 and a["position_consistency"]["p"] == 1.0 and a["calls_per_1000"] == 2000
    assert (tmp_path / "r" / "index.html").is_file()
    journal = next((tmp_path / "r").glob("journal-pairwise-*.jsonl"))
    assert set(read_journal(journal)) == {f"g{i}" for i in range(6)}


async def _run(tmp_path, pairwise_backend, rubric_backend):
    from bestofn.apps.ab import arun_ab

    first = await arun_ab(_gold(), PANELS / "ab_correctness.toml", PANELS / "ab_correctness.toml",
                          judge_model=rubric_backend, cache=False)
    assert first.figures["summary"]["A: ab-correctness"]["tie_rate"] == 1.0
    # panel B's pairwise judge gets its own scripted backend
    return await arun_ab(_gold(), PANELS / "ab_correctness.toml", "pairwise", cache=False,
                         judge_model=_Router({"correctness": rubric_backend, "preference": pairwise_backend}),
                         report=tmp_path / "r")


class _Router(FakeBackend):
    """Routes a call to the scripted backend of the judge whose rubric the prompt carries."""

    def __init__(self, routes):
        super().__init__(spec="fake:router")
        self.routes = routes

    async def sample(self, messages, params):
        pairwise = "two answers" in messages[0].content
        return await self.routes["preference" if pairwise else "correctness"].sample(messages, params)


def test_run_ab_sync_wrapper_and_journal_resume(tmp_path):
    scores = FakeBackend([json.dumps({"reasoning": "ok", "score": s}) for s in [8, 3] * 50], spec="fake:alt")
    out = tmp_path / "r"
    run_ab(_gold(4), PANELS / "ab_correctness.toml", PANELS / "ab_helpfulness.toml", judge_model=scores,
           cache=False, report=out)
    used = len(scores.requests)
    assert used == 16  # 4 pairs x 2 answers x 2 panels
    again = run_ab(_gold(4), PANELS / "ab_correctness.toml", PANELS / "ab_helpfulness.toml", judge_model=scores,
                   cache=False, report=out)
    assert len(scores.requests) == used  # everything came from the journal
    assert again.figures["summary"]["A: ab-correctness"]["n"] == 4


async def test_run_ab_works_inside_a_running_event_loop(loopback):
    """A Jupyter cell calling the sync `run_ab`: an event loop is already running in this thread."""
    from bestofn.backends.vllm import VLLMServerBackend

    judge = VLLMServerBackend("loopback", base_url=loopback.base_url)
    result = run_ab(_gold(2), PANELS / "ab_correctness.toml", PANELS / "ab_helpfulness.toml", judge_model=judge,
                    cache=False)
    assert [len(r) for r in result.panels.values()] == [2, 2]
    assert all(r.pred is not None for rs in result.panels.values() for r in rs)


@pytest.mark.parametrize("content_free", ["demote", "veto", "flag"])
async def test_ab_decides_as_run_ranks_a_content_free_answer(loopback, content_free):
    """The judges give the content-free ":" 10 and "Paris" 5. `run` (aselect) ranks "Paris" first unless the
    panel only flags content-free answers; the A/B harness decides the same way, in both orders."""
    from bestofn.backends.vllm import VLLMServerBackend
    from bestofn.pipeline.select import aselect
    from tests.loopback import completion_body

    answers = [":", "Paris"]

    def hook(req):
        body = req.body or {}
        if not body.get("response_format"):  # generation: one of each
            out = completion_body("x", n=body.get("n", 1))
            for i, choice in enumerate(out["choices"]):
                choice["message"]["content"] = answers[i % 2]
            return 200, out
        score = 5 if "Paris" in body["messages"][-1]["content"] else 10
        return 200, completion_body(json.dumps({"reasoning": "scripted", "score": score}))

    loopback.hook = hook
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url, flavour="vllm")
    panel = load_panel(PANELS / "ab_correctness.toml").model_copy(update={"content_free": content_free})
    sel = await aselect("What is the capital of France?", n=2, model=backend, judge_model=backend, panel=panel,
                        cache=False)
    picked = sel.best.text
    assert picked == (":" if content_free == "flag" else "Paris")
    runner = PanelRunner(panel, RunSettings(judge_model=backend, cache=False))
    item = GoldPair(id="q", subset="s", prompt="What is the capital of France?", response_a=":",
                    response_b="Paris", label="b", source="x")
    result = await runner.pair(item)
    assert result.pred == result.first == result.second == ("a" if picked == ":" else "b")
