"""Direct scores (`reasoning = false`): the score first, no reasoning, its distribution read where it stands.

The judges talk to the tests' OpenAI-compatible server on loopback (a scripted reply with its token logprobs,
as a server that returns `top_logprobs` sends them); the open judge model, where present, runs the real thing."""

from __future__ import annotations

import math
import os
from pathlib import Path

import platformdirs
import pytest

from bestofn.backends.base import Completion, TokenLogprob
from bestofn.backends.openai import OpenAIBackend
from bestofn.config.panel import JudgeConfig
from bestofn.config.templates import load_template
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput
from bestofn.judging.compact import CompactJudge
from bestofn.judging.direct import parse_scores
from bestofn.judging.logprob import expected_at
from bestofn.judging.rubric import RubricJudge
from bestofn.records import Candidate, Message, text_id
from tests.loopback import completion_body

ITEM = JudgeInput(prompt=[Message(role="user", content="What is 6 times 7?")], seed=0)
ANSWER = Candidate(id=text_id("Forty-two."), index=0, text="Forty-two.", model="test")


def scripted(srv, tokens: list[tuple[str, dict[str, float]]]) -> None:
    """Every chat request gets this reply: the tokens' text, each token with its top alternatives' probabilities."""
    text = "".join(t for t, _ in tokens)
    body = completion_body(text)
    body["choices"][0]["logprobs"] = {"content": [
        {"token": t, "logprob": math.log(top.get(t, 1.0)), "bytes": None,
         "top_logprobs": [{"token": k, "logprob": math.log(p), "bytes": None} for k, p in top.items()]}
        for t, top in tokens]}
    srv.hook = lambda req: (200, body) if req.path.endswith("/chat/completions") else None


def judge_backend(srv) -> OpenAIBackend:
    return OpenAIBackend("gpt-4o-mini", base_url=srv.base_url, api_key="sk-test", max_retries=0)


async def test_a_direct_rubric_asks_for_the_score_alone_and_reads_its_distribution(loopback):
    scripted(loopback, [("8", {"8": 0.5, "7": 0.3, "9": 0.2})])
    config = JudgeConfig(name="correctness", rubric="correctness.v1", score_method="logprob", reasoning=False)
    (verdict,) = await RubricJudge(config=config, backend=judge_backend(loopback)).judge(ITEM, [ANSWER])
    body = loopback.chat_requests()[0].body
    assert loopback.count == 1 and body["logprobs"] is True and body["top_logprobs"] == config.top_logprobs
    assert "response_format" not in body and body.get("max_completion_tokens", body.get("max_tokens")) <= 12
    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    assert "Reply with the score only" in system and '"reasoning"' not in system
    assert user.endswith("Score (1 to 10), the integer only:")
    assert verdict.status == "ok" and verdict.score == pytest.approx(0.5 * 8 + 0.3 * 7 + 0.2 * 9)
    assert verdict.reasoning is None and verdict.details["reasoning"] is False
    assert verdict.details["logprob"][0]["sampled"] == 8.0
    assert verdict.normalized == pytest.approx((verdict.score - 1) / 9, abs=1e-6)


async def test_a_direct_reply_without_a_score_is_invalid_and_not_re_asked(loopback):
    scripted(loopback, [("The", {"The": 1.0}), (" answer", {}), (" is", {}), (" 42.", {})])
    config = JudgeConfig(name="correctness", rubric="correctness.v1", score_method="logprob", reasoning=False)
    (verdict,) = await RubricJudge(config=config, backend=judge_backend(loopback)).judge(ITEM, [ANSWER])
    assert verdict.status == "invalid" and loopback.count == 1
    assert verdict.reason == "no score in the reply 'The answer is 42.'"


async def test_a_direct_compact_rubric_reads_each_criterion_where_its_score_stands(loopback):
    scripted(loopback, [("correctness", {}), (":", {}), (" 7", {" 7": 0.5, " 6": 0.5}), ("\n", {}),
                        ("safety", {}), (":", {}), (" 9", {" 9": 0.8, " 8": 0.2})])
    config = JudgeConfig(name="aspects", rubric="compact.v1", per_criterion=True, score_method="logprob",
                         reasoning=False, criteria=[{"name": "correctness"}, {"name": "safety"}])
    verdicts = await CompactJudge(config=config, backend=judge_backend(loopback)).judge(ITEM, [ANSWER])
    assert {v.judge: v.score for v in verdicts} == {"correctness": pytest.approx(6.5), "safety": pytest.approx(8.8)}
    system = loopback.chat_requests()[0].body["messages"][0]["content"]
    assert "correctness: (an integer from 1 to 10)\nsafety: (an integer from 1 to 10)" in system
    assert verdicts[0].details["reasoning"] is False and verdicts[0].usage.completion_tokens > 0
    assert verdicts[1].usage.completion_tokens == 0  # one call's usage, recorded once


def test_scores_are_read_where_the_reply_puts_them():
    one = [("score", 1, 10)]
    assert parse_scores("8", one, bare=True) == ({"score": (8, 0)}, None)
    assert parse_scores("Score: 10", one, bare=True) == ({"score": (10, 7)}, None)
    assert parse_scores(" 7/10", one, bare=True) == ({"score": (7, 1)}, None)
    assert parse_scores("The product is 6 times 7", one, bare=True)[1].startswith("no score in the reply")
    assert parse_scores("11", one, bare=True) == ({}, "score 11 is outside 1-10")
    two = [("correctness", 1, 10), ("safety", 1, 5)]
    assert parse_scores("**Correctness**: 7\n- safety = 5", two, bare=False) == (
        {"correctness": (7, 17), "safety": (5, 30)}, None)
    assert parse_scores("correctness: 7", two, bare=False) == ({}, "no 'safety' score in the reply 'correctness: 7'")


def tokens(*steps: tuple[str, dict[str, float]]) -> Completion:
    logprobs = [TokenLogprob(token=t, logprob=math.log(top.get(t, 1.0)), top={k: math.log(p) for k, p in top.items()})
                for t, top in steps]
    return Completion(text="".join(t for t, _ in steps), logprobs=logprobs)


def test_a_prefix_token_goes_to_the_value_nearest_the_sampled_score():
    """ "1" could begin "10": after a sampled 9 its mass is read as 10 (direct), as 1 by today's rule."""
    reply = tokens(("9", {"9": 0.6, "1": 0.4}))
    nearest, how = expected_at(reply, 0, "the score", 1, 10, nearest=9)
    assert nearest == pytest.approx(0.6 * 9 + 0.4 * 10) and how["ambiguous_prefix_mass"] == pytest.approx(0.4)
    assert expected_at(reply, 0, "the score", 1, 10)[0] == pytest.approx(0.6 * 9 + 0.4 * 1)
    # a sampled "1" is split by the next position's distribution (the end of the reply: the token "")
    split, _ = expected_at(tokens(("1", {"1": 0.7, "9": 0.3}), ("", {"": 0.5, "0": 0.5})), 0, "the score", 1, 10,
                           nearest=1)
    assert split == pytest.approx(0.35 * 1 + 0.35 * 10 + 0.3 * 9)


def test_a_template_without_the_flag_cannot_score_directly(tmp_path):
    path = tmp_path / "plain.v1.md.j2"
    path.write_text("{% block system %}Score it {{ low }}-{{ high }}.{% endblock %}{% block user %}{{ answer }}"
                    "{% endblock %}", encoding="utf-8")
    with pytest.raises(ConfigError, match=rf"template {path} has no `reasoning` flag"):
        RubricJudge(config=JudgeConfig(name="c", rubric=str(path), reasoning=False))


def test_the_reasoning_prompt_is_the_same_with_the_flag_set_or_not():
    """The flag only adds the direct branch: judges that reason send the prompt (and hit the cache) as before."""
    for name in ("correctness", "helpfulness", "instruction_following", "safety", "reference_graded", "compact"):
        template = load_template(f"{name}.v1")
        kw = dict(question="Q?", answer="A.", reference="R.", low=1, high=10, examples=[],
                  criteria=[{"name": "correctness", "low": 1, "high": 10, "description": ""}])
        assert template.render(**kw, reasoning=True) == template.render(**kw) != template.render(**kw, reasoning=False)


#: the open judge (Qwen2.5-Coder-1.5B-Instruct Q4_K_M): where bench/open_judge.py puts it, or this variable's path
OPEN_JUDGE = Path(os.environ.get("BESTOFN_OPEN_JUDGE_GGUF")
                  or Path(platformdirs.user_cache_dir("bestofn")) / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")


@pytest.mark.skipif(not OPEN_JUDGE.is_file(), reason=f"the open judge is not at {OPEN_JUDGE} (python "
                    "bench/open_judge.py fetches it; or set BESTOFN_OPEN_JUDGE_GGUF)")
async def test_the_open_judge_scores_directly_from_one_token():
    """The real model: the bare score, its distribution read at the reply's first token (local backend, the last
    position's logits), and a right answer above a wrong one."""
    from bestofn.backends import load_backend

    backend = load_backend(f"local:{OPEN_JUDGE}")
    config = JudgeConfig(name="correctness", rubric="correctness.v1", score_method="logprob", reasoning=False)
    judge = RubricJudge(config=config, backend=backend)
    right, wrong = (Candidate(id=text_id(t), index=i, text=t, model="test")
                    for i, t in enumerate(["6 times 7 is 42.", "6 times 7 is 13."]))
    verdicts = await judge.judge(ITEM, [right, wrong])
    assert [v.status for v in verdicts] == ["ok", "ok"], [v.reason for v in verdicts]
    for v in verdicts:
        how = v.details["logprob"][0]
        assert how["score_method"] == "logprob" and v.usage.completion_tokens <= 3, (v.raw, how)
        assert 0.5 <= how["mass"] <= 1.0 + 1e-6  # probabilities: the logits were log-softmaxed
        assert v.score == pytest.approx(sum(int(k) * p for k, p in how["distribution"].items()), abs=1e-3)
    assert verdicts[0].score > verdicts[1].score
