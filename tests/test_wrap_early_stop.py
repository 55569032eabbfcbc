"""Early stop (`accept_threshold`): candidates sampled in waves, stopping once one clears the threshold.
Behind it, the loopback protocol server (counted requests); the pipeline is the real `aselect`."""

from __future__ import annotations

import pytest

import bestofn
from bestofn.ranking.aggregate import Aggregate
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.pipeline.early_stop import accepted
from bestofn.errors import ConfigError
from tests.loopback import LoopbackServer

ASK = "Why is the sky blue?"
JUDGES = 4  # the default panel


def generation(server) -> list[dict]:
    return [r.body for r in server.chat_requests() if "response_format" not in r.body]


async def test_a_reachable_threshold_stops_after_the_first_wave(loopback):
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url)
    sel = await bestofn.aselect(ASK, n=8, model=backend, judge_model=backend, cache=False, seed=4,
                                accept_threshold=0.0, wave_size=2)
    report = sel.stats["early_stop"]
    assert report == {**report, "threshold": 0.0, "wave_size": 2, "waves": 1, "n": 8, "sampled": 2,
                      "stopped_early": True, "accepted": sel.ranking[0]}
    assert len(sel.candidates) == 2 and sel.best.id == report["accepted"]
    assert [g["n"] for g in generation(loopback)] == [2]  # one wave of two, not eight
    assert loopback.count == 1 + JUDGES * 2
    # the estimate: what the six candidates not sampled would have cost, at this run's rate per candidate
    assert report["calls_saved_est"] == round((sel.cost.calls / 2) * 6)
    assert report["tokens_saved_est"] == round((sel.cost.prompt_tokens + sel.cost.completion_tokens) / 2 * 6)


async def test_an_unreachable_threshold_samples_all_n_in_waves(loopback):
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url)
    sel = await bestofn.aselect(ASK, n=6, model=backend, judge_model=backend, cache=False, seed=4,
                                accept_threshold=1.0, wave_size=4)
    report = sel.stats["early_stop"]
    assert max(s for s in sel.scores.values() if s is not None) < 1.0
    assert report["waves"] == 2 and report["sampled"] == 6 and not report["stopped_early"]
    assert report["accepted"] is None and report["calls_saved_est"] == 0
    assert [g["n"] for g in generation(loopback)] == [4, 2]
    assert [g["seed"] for g in generation(loopback)] == [4, 8]  # wave k seeds at seed + its first index
    assert [c.index for c in sel.candidates] == list(range(6))
    assert [c.params["sample"] for c in sel.candidates] == list(range(6))
    assert len(sel.verdicts) == JUDGES * 6 and len(sel.ranking) == 6


async def test_waves_draw_the_same_candidates_as_one_run_on_a_fan_out_server():
    """On a server that seeds sample i with seed + i (llama.cpp's), the waves are a prefix of the full run."""
    with LoopbackServer(flavour="llama-cpp", max_choices=1) as server:
        backend = VLLMServerBackend("loopback", base_url=server.base_url)
        full = await bestofn.aselect(ASK, n=6, model=backend, judge_model=backend, cache=False, seed=9)
        waves = await bestofn.aselect(ASK, n=6, model=backend, judge_model=backend, cache=False, seed=9,
                                      accept_threshold=1.0, wave_size=2)
    assert [c.text for c in waves.candidates] == [c.text for c in full.candidates]
    assert waves.scores == full.scores and waves.ranking == full.ranking


async def test_a_candidate_repeated_in_a_later_wave_is_not_judged_again(loopback):
    def same_answer(req):
        if req.path.endswith("/chat/completions") and "response_format" not in (req.body or {}):
            n = req.body.get("n", 1)
            choice = {"message": {"role": "assistant", "content": "Rayleigh scattering."}, "finish_reason": "stop"}
            return 200, {"id": "x", "object": "chat.completion", "created": 0, "model": "loopback",
                         "choices": [{**choice, "index": i} for i in range(n)],
                         "usage": {"prompt_tokens": 5, "completion_tokens": 2 * n, "total_tokens": 5 + 2 * n}}
        return None

    loopback.hook = same_answer
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url)
    sel = await bestofn.aselect(ASK, n=6, model=backend, judge_model=backend, cache=False, seed=4,
                                accept_threshold=1.0, wave_size=2)
    assert [c.duplicate_of for c in sel.candidates] == [None, 0, 0, 0, 0, 0]
    assert len(sel.verdicts) == JUDGES  # judged once, in the first wave
    assert loopback.count == 3 + JUDGES  # three waves of generation, one candidate's judging


def test_acceptance_needs_a_safe_best_and_a_valid_threshold():
    ranked = Aggregate(scores={"a": 0.9, "b": 0.4}, ranking=["a", "b"])
    assert accepted(ranked, 0.8) == "a" and accepted(ranked, 0.95) is None
    flagged = Aggregate(scores={"a": 0.9}, ranking=["a"], safety_flagged=frozenset({"a"}))
    assert accepted(flagged, 0.5) is None
    vetoed = Aggregate(scores={"a": 0.9}, ranking=["a"], vetoed=frozenset({"a"}))  # every candidate vetoed
    assert accepted(vetoed, 0.5) is None
    assert accepted(Aggregate(scores={"a": None}, ranking=[]), 0.0) is None
    with pytest.raises(ConfigError, match="between 0 and 1"):
        bestofn.select(ASK, n=2, accept_threshold=1.5)


async def test_comparative_panels_are_refused(loopback):
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url)
    with pytest.raises(ConfigError, match="pointwise judges"):
        await bestofn.aselect(ASK, n=4, model=backend, judge_model=backend, panel="pairwise", cache=False,
                              accept_threshold=0.5)
    assert loopback.count == 0
