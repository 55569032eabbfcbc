"""Pairwise judging read by logprobs (score_method = "logprob"): one token per order, the letters' margins pooled
over both orders, soft wins into Bradley-Terry, a clear failure where no logprobs come back.

The judge's arithmetic runs against OpenAI's Chat Completions wire format answered by an httpx2.MockTransport
(the real API cannot be reached here) whose "model" scores the two answers it is shown: its top logprobs are
log sigmoid(+-margin) for the letters A and B, margin = bias + quality(first) - quality(second). The same judge
then runs on the real embedded model and on a real llama.cpp server (tests/llama_server.py)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import httpx2
import openai
import pytest
from rich.console import Console

from bestofn.apps.ab import run_ab
from bestofn.apps.ab.report import print_report
from bestofn.backends.openai import OpenAIBackend
from bestofn.config.panel import load_panel
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.pairwise import PairwiseJudge, sigmoid
from bestofn.ranking.aggregate import aggregate
from bestofn.records import Candidate, Message, text_id

ITEM = JudgeInput(prompt=[Message(role="user", content="What is the capital of France?")], seed=0)
SHOWN = re.compile(r"Answer A:\n<answer-\w+>\n(.*?)\n</answer-\w+>\n\nAnswer B:\n<answer-\w+>\n(.*?)\n</answer-", re.S)


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x))


class Model:
    """The MockTransport's handler: records each request body and answers with scripted top logprobs."""

    def __init__(self, quality: dict[str, float] | None = None, bias: float = 0.0, top=None, logprobs: bool = True):
        self.quality, self.bias, self.logprobs = quality or {}, bias, logprobs
        self.top = top or self.letters  # (first text, second text) -> {token: logprob}
        self.bodies: list[dict] = []

    def letters(self, first: str, second: str) -> dict[str, float]:
        margin = self.bias + self.quality[first] - self.quality[second]
        return {"A": log_sigmoid(margin), "B": log_sigmoid(-margin), "The": -9.0}

    def __call__(self, request: httpx2.Request) -> httpx2.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        first, second = SHOWN.search(body["messages"][-1]["content"]).groups()
        top = self.top(first, second)
        token = max(top, key=top.get)
        logprobs = {"content": [{"token": token, "logprob": top[token], "bytes": None, "top_logprobs": [
            {"token": t, "logprob": lp, "bytes": None} for t, lp in top.items()]}]} if self.logprobs else None
        return httpx2.Response(200, json={
            "id": f"chatcmpl-{len(self.bodies)}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "length", "logprobs": logprobs,
                         "message": {"role": "assistant", "content": token}}],
            "usage": {"prompt_tokens": 120, "completion_tokens": 1, "total_tokens": 121}})


def backend(model: Model) -> OpenAIBackend:
    client = openai.AsyncOpenAI(api_key="sk-test", max_retries=0,
                                http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(model)))
    return OpenAIBackend("gpt-4o-mini", client=client)


def candidates(*texts: str) -> list[Candidate]:
    return [Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)]


def judge(model: Model, **overrides) -> PairwiseJudge:
    config = load_panel("pairwise-logprob").judges[0]
    return PairwiseJudge(config=config.model_copy(update=overrides), backend=backend(model))


async def test_one_token_per_order_and_the_pooled_margin_cancels_a_position_bias():
    model = Model({"Paris.": 1.0, "Lyon.": -0.5}, bias=3.0)  # each order alone prefers whatever it shows first
    a, b = candidates("Lyon.", "Paris.")
    v = await judge(model).match(ITEM, a, b)
    assert len(model.bodies) == 2
    for body in model.bodies:
        assert body["max_tokens"] == 1 and body["logprobs"] is True and body["top_logprobs"] == 10
        assert "response_format" not in body
    first, second = v.details["orders"]
    assert (first["first"], second["first"]) == (a.id, b.id)
    assert first["said"] == second["said"] == "A" and not v.details["consistent"]  # the raw verdicts: position
    assert first["margin"] == pytest.approx(3.0 - 1.5) and second["margin"] == pytest.approx(3.0 + 1.5)
    assert v.details["margin"] == pytest.approx(-3.0)  # m = margin(a first) - margin(b first): the bias cancels
    assert v.status == "ok" and v.details["winner"] == b.id and v.score == 0.0
    assert v.normalized == pytest.approx(sigmoid(-3.0))  # a's soft win
    assert v.reasoning is None and v.raw == "A" and v.usage.completion_tokens == 2
    json.loads(v.model_dump_json())  # the Verdict's JSON shape is the one every other verdict has


async def test_soft_wins_decide_where_hard_wins_go_round_in_a_circle():
    # x beats y by a lot, y beats z and z beats x by a little: hard wins tie all three, soft wins put x first
    margin = {("x", "y"): 4.0, ("y", "z"): 0.5, ("z", "x"): 0.5}

    def top(first: str, second: str) -> dict[str, float]:
        m = margin.get((first, second)) or -margin[(second, first)]
        return {"A": log_sigmoid(m / 2), "B": log_sigmoid(-m / 2)}  # each order half of the pooled margin

    cands = candidates("x", "y", "z")
    panel = load_panel("pairwise-logprob")
    (j,) = build_judges(panel, lambda config: backend(Model(top=top)))
    verdicts = await j.judge(ITEM, cands)
    assert len(verdicts) == 3 and {v.status for v in verdicts} == {"ok"}
    result = aggregate(panel, [c.id for c in cands], verdicts)
    x, y, z = (c.id for c in cands)
    assert result.ranking[0] == x and result.scores[x] > result.scores[z] > result.scores[y]
    assert result.stats["bias"]["position_consistency"]["preference"]["consistency"] == 1.0


async def test_a_label_missing_from_the_top_logprobs_counts_as_the_smallest_listed():
    top = lambda first, second: {"A": -0.1, " A": -2.5, "C": -4.0, "D": -6.0}  # noqa: E731  B not listed
    a, b = candidates("one", "two")
    v = await judge(Model(top=top)).match(ITEM, a, b)
    first, second = v.details["orders"]
    assert first["missing"] == ["B"] and first["logprobs"]["B"] == -6.0
    assert first["logprobs"]["A"] == pytest.approx(math.log(math.exp(-0.1) + math.exp(-2.5)), abs=1e-6)
    assert v.status == "ok" and v.details["margin"] == 0.0 and v.details["winner"] is None and v.normalized == 0.5


async def test_tie_margin_makes_a_small_pooled_margin_a_tie():
    model = Model({"one": 0.1, "two": 0.0})
    a, b = candidates("one", "two")
    v = await judge(model).match(ITEM, a, b)
    assert v.details["margin"] == pytest.approx(0.2) and v.details["winner"] == a.id and v.score == 1.0
    tied = await judge(model, tie_margin=0.25).match(ITEM, a, b)
    assert tied.details["winner"] is None and tied.score == 0.5 and tied.normalized == 0.5


@pytest.mark.parametrize("model, why", [
    (Model({"one": 1.0, "two": 0.0}, logprobs=False), "no top logprobs"),
    (Model(top=lambda first, second: {"Sure": -0.1, "I": -2.0}), "neither 'A' nor 'B' is among the 2 top tokens"),
])
async def test_no_letters_to_read_is_an_invalid_verdict_naming_the_judge(model, why):
    a, b = candidates("one", "two")
    v = await judge(model).match(ITEM, a, b)
    assert v.status == "invalid" and v.score is None and v.normalized is None
    assert v.reason.startswith("judge 'preference': a-first: ") and why in v.reason


async def test_a_backend_without_logprobs_is_an_error_naming_the_judge():
    import anthropic

    from bestofn.backends.anthropic import AnthropicBackend

    sent = []
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", max_retries=0, http_client=httpx2.AsyncClient(
        transport=httpx2.MockTransport(lambda request: sent.append(request) or httpx2.Response(500))))
    config = load_panel("pairwise-logprob").judges[0]
    a, b = candidates("one", "two")
    claude = AnthropicBackend("claude-haiku-4-5", client=client)
    v = await PairwiseJudge(config=config, backend=claude).match(ITEM, a, b)
    assert v.status == "error" and v.reason.startswith("judge 'preference': ") and "no logprobs" in v.reason
    assert sent == []


def test_tie_margin_without_logprob_scoring_is_an_error(tmp_path):
    path = tmp_path / "p.toml"
    path.write_text('name = "p"\n\n[[judge]]\nname = "pref"\nkind = "pairwise"\nrubric = "pairwise.v1"\n'
                    'tie_margin = 0.5\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"judge 'pref': tie_margin is read with score_method = \"logprob\" only"):
        load_panel(path)


def test_ab_reports_each_orders_raw_position_bias_beside_the_pooled_accuracy(tmp_path, capsys):
    rows = [{"prompt": f"Question {i}?", "response_a": f"good {i}", "response_b": f"bad {i}", "label": "a"}
            for i in range(3)]
    rows += [{"prompt": f"Question {i}?", "response_a": f"bad {i}", "response_b": f"good {i}", "label": "b"}
             for i in range(3, 6)]
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    model = Model(bias=2.0)
    model.quality = {f"{kind} {i}": (1.0 if kind == "good" else 0.0) for i in range(6) for kind in ("good", "bad")}
    result = run_ab(gold, "pairwise-logprob", "pairwise-logprob", judge_model=backend(model), cache=False)
    s = result.figures["summary"]["A: pairwise-logprob"]
    assert s["accuracy"] == 1.0  # the pooled decision is always right ...
    orders = s["p_prefer_first_by_order"]  # ... while each order alone always picked the answer shown first
    assert [(orders[o]["k"], orders[o]["n"]) for o in ("a_first", "b_first")] == [(6, 6), (6, 6)]
    assert s["position_consistency"]["p"] == 0.0 and s["p_prefer_first"]["p"] == 1.0
    flags = result.figures["flags"]["A: pairwise-logprob"]  # the bias is the raw verdicts', not the decision's
    assert any(f.startswith("position bias: each order alone picks the answer shown first 100%") for f in flags)
    assert not any(f.startswith("position consistency") for f in flags)
    print_report(result.figures, Console(width=300))
    out = capsys.readouterr().out
    assert "A: pairwise-logprob: each order's raw verdict favoured the answer shown first 100%" in out


async def test_on_the_embedded_model(local_backend):
    panel = load_panel("pairwise-logprob")
    (j,) = build_judges(panel, lambda config: local_backend)
    a, b = candidates("Paris is the capital of France.", "The capital of France is Berlin.")
    v = await j.match(ITEM, a, b)
    assert v.status == "ok", v.reason
    assert v.usage.completion_tokens == 2  # one token per order
    margins = [o["margin"] for o in v.details["orders"]]
    assert all(o["logprobs"]["A"] < 0 and o["logprobs"]["B"] < 0 for o in v.details["orders"])
    assert v.details["margin"] == pytest.approx(margins[0] - margins[1], abs=2e-6)
    assert v.normalized == pytest.approx(sigmoid(v.details["margin"]), abs=1e-6)


async def test_on_a_real_llama_cpp_server(llama_server):
    from bestofn.backends import load_backend

    panel = load_panel("pairwise-logprob")
    (j,) = build_judges(panel, lambda config: load_backend("vllm:smol", llama_server))
    a, b = candidates("Paris is the capital of France.", "The capital of France is Berlin.")
    v = await j.match(ITEM, a, b)
    assert v.status == "ok", v.reason
    assert all(o["said"] in ("A", "B") and o["logprobs"]["A"] < 0 for o in v.details["orders"])
    assert v.normalized == pytest.approx(sigmoid(v.details["margin"]), abs=1e-6)


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_bradley_terry_fits_a_soft_win_as_that_share_of_a_win(ties):
    from bestofn.ranking.comparisons import Comparison, bradley_terry

    soft = bradley_terry([Comparison("x", "y", 0.7)], ["x", "y"], ties=ties)
    assert soft.strength["x"] > soft.strength["y"]  # 0.7 is not a tie (it is not 0.5)
    if ties == "half":  # the fit's P(x beats y) is the soft win itself (the prior barely moves it)
        assert soft.expected["x"] == pytest.approx(0.7, abs=1e-3)
    tie = bradley_terry([Comparison("x", "y", 0.5)], ["x", "y"], ties=ties)
    assert tie.strength["x"] == pytest.approx(tie.strength["y"], abs=1e-6)
