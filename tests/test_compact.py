"""Several criteria in one call per candidate: the `compact` panel reads like `default` with a quarter of the
calls; criteria with their own ranges adding up to a total; reference-guided rubrics; few-shot examples;
logprob-weighted (G-Eval) scores and their fallback."""

import json
import math

import pytest

from bestofn.ranking.aggregate import aggregate
from bestofn.backends.base import Completion, TokenLogprob
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.compact import CompactJudge
from bestofn.judging.logprob import expected_score, score_from, value_offsets
from bestofn.judging.rubric import RubricJudge
from bestofn.config.panel import JudgeConfig, load_panel
from bestofn.records import Candidate, Message, text_id
from tests.fake_backend import FakeBackend
from tests.oracle_backend import OracleBackend

ITEM = JudgeInput(prompt=[Message(role="user", content="What is 6 times 7?")], seed=0)
TEXTS = {"Six times seven is 42.": 9, "It is 48, I think.": 3, "Forty-two.": 7}


def candidates(texts):
    return [Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)]


async def judge_with(panel_name, backend, cands):
    panel = load_panel(panel_name)
    judges = build_judges(panel, lambda config: backend)
    verdicts = []
    for j in judges:
        for c in cands:  # pointwise: one candidate per call, as the pipeline does
            verdicts += await j.judge(ITEM, [c])
    return panel, verdicts


async def test_compact_makes_one_call_per_candidate_and_reads_like_the_default_panel():
    cands = candidates(TEXTS)
    compact_oracle, default_oracle = OracleBackend(TEXTS), OracleBackend(TEXTS)
    compact, compact_verdicts = await judge_with("compact", compact_oracle, cands)
    default, default_verdicts = await judge_with("default", default_oracle, cands)
    assert compact_oracle.calls == len(cands) == 3
    assert default_oracle.calls == 4 * len(cands)  # four times the calls for the same verdicts
    key = lambda v: (v.judge, v.candidate_ids[0])  # noqa: E731
    assert sorted(map(key, compact_verdicts)) == sorted(map(key, default_verdicts))
    assert {v.kind for v in compact_verdicts} == {"rubric"}
    same = {key(v): v.normalized for v in default_verdicts}
    assert all(v.normalized == pytest.approx(same[key(v)]) for v in compact_verdicts)
    ids = [c.id for c in cands]
    a, b = aggregate(compact, ids, compact_verdicts), aggregate(default, ids, default_verdicts)
    assert a.scores == b.scores and a.ranking == b.ranking
    # one call's usage is recorded once
    assert sum(v.usage.prompt_tokens for v in compact_verdicts) == 10 * compact_oracle.calls


async def test_criteria_with_their_own_ranges_add_up_to_a_total():
    config = JudgeConfig(name="rerank", rubric="compact.v1", criteria=[
        {"name": "direct_answer", "scale": [0, 5]}, {"name": "completeness", "scale": [0, 3]},
        {"name": "factual_accuracy", "scale": [0, 2]},
    ])
    assert config.scale == (0, 10)
    fake = FakeBackend(['{"reasoning": "ok", "direct_answer": 4, "completeness": 3, "factual_accuracy": 1}'])
    (verdict,) = await CompactJudge(config=config, backend=fake).judge(ITEM, candidates(["Forty-two."]))
    assert verdict.judge == "rerank" and verdict.score == 8 and verdict.normalized == pytest.approx(0.8)
    assert verdict.criteria == {"direct_answer": 4, "completeness": 3, "factual_accuracy": 1}
    system = fake.requests[0][0][0].content
    assert "direct_answer (0 to 5)" in system and "factual_accuracy (0 to 2)" in system
    with pytest.raises(ValueError, match="not the criteria's total"):
        JudgeConfig(name="x", rubric="compact.v1", scale=[1, 10], criteria=[{"name": "a", "scale": [0, 5]}])


async def test_an_out_of_range_criterion_is_reasked_then_invalid_for_every_criterion():
    config = load_panel("compact").judges[0]
    fake = FakeBackend([
        '{"reasoning": "x", "correctness": 11, "safety": 9, "helpfulness": 9, "instruction_following": 9}',
        '{"reasoning": "x", "correctness": 0, "safety": 9, "helpfulness": 9, "instruction_following": 9}',
    ])
    verdicts = await CompactJudge(config=config, backend=fake).judge(ITEM, candidates(["Forty-two."]))
    assert len(fake.requests) == 2
    assert [v.status for v in verdicts] == ["invalid"] * 4 and "correctness" in verdicts[0].reason
    assert [v.judge for v in verdicts] == ["correctness", "safety", "helpfulness", "instruction_following"]


async def test_an_invalid_reply_gets_exactly_one_reask_with_the_reason_and_the_valid_reask_is_used():
    config = load_panel("compact").judges[0]
    bad = '{"reasoning": "x", "correctness": 11, "safety": 9, "helpfulness": 9, "instruction_following": 9}'
    fake = FakeBackend([bad, '{"reasoning": "y", "correctness": 4, "safety": 9, "helpfulness": 6, '
                             '"instruction_following": 8}'])
    verdicts = await CompactJudge(config=config, backend=fake).judge(ITEM, candidates(["Forty-two."]))
    assert len(fake.requests) == 2 and fake.requests[1][1].n == 1  # the call, then one re-ask of that sample
    asked, retry = fake.requests[0][0], fake.requests[1][0]
    assert retry[: len(asked)] == asked and retry[-2].role == "assistant" and retry[-2].content == bad
    assert "correctness" in retry[-1].content and "less than or equal to 10" in retry[-1].content  # the reason
    assert '"instruction_following"' in retry[-1].content  # and the schema to reply in
    assert [v.status for v in verdicts] == ["ok"] * 4 and all(v.attempts == 2 for v in verdicts)
    assert [v.score for v in verdicts] == [4, 9, 6, 8] and verdicts[0].reasoning == "y"


async def test_samples_are_averaged_with_their_spread():
    config = JudgeConfig(name="aspects", rubric="compact.v1", per_criterion=True, samples=2,
                         criteria=[{"name": "correctness"}, {"name": "safety"}])
    fake = FakeBackend(['{"reasoning": "a", "correctness": 6, "safety": 9}',
                        '{"reasoning": "b", "correctness": 8, "safety": 9}'])
    verdicts = await CompactJudge(config=config, backend=fake).judge(ITEM, candidates(["Forty-two."]))
    assert len(fake.requests) == 1 and fake.requests[0][1].n == 2
    assert verdicts[0].score == 7 and verdicts[0].details["spread"] == {"correctness": 1.0}


async def test_reference_guided_rubric_on_an_mt_bench_math_question(data_dir):
    """MT-Bench's math questions come with GPT-4 reference answers: the rubric shows the reference before the
    candidate, and abstains (no call) when a prompt comes without one."""
    folder = data_dir / "mt_bench"
    questions = [json.loads(line) for line in (folder / "mt_bench_question.jsonl").open()]
    lines = (folder / "mt_bench_reference_answer_gpt-4.jsonl").open()
    references = {r["question_id"]: r for r in map(json.loads, lines)}
    question = next(q for q in questions if q["category"] == "math" and q["question_id"] in references)
    reference = references[question["question_id"]]["choices"][0]["turns"][0]
    config = JudgeConfig(name="math", rubric="reference_graded.v1", scale=[1, 10], needs_reference=True,
                         examples=[{"answer": "7 x 6 = 40", "verdict": "2", "explanation": "wrong product"}])
    fake = FakeBackend(['{"reasoning": "the final result differs from the reference", "score": 2}'])
    rubric = RubricJudge(config=config, backend=fake)
    (cand,) = candidates(["The area is 12."])
    item = JudgeInput(prompt=[Message(role="user", content=question["turns"][0])], seed=0, reference=reference)
    (verdict,) = await rubric.judge(item, [cand])
    system, user = fake.requests[0][0]
    assert verdict.status == "ok" and verdict.kind == "rubric"
    assert verdict.normalized == pytest.approx(1 / 9)  # the judge's 2 on this rubric's own scale, 1-10
    assert reference in user.content and question["turns"][0] in user.content
    assert user.content.index(reference) < user.content.index("The area is 12.")  # candidate last
    assert reference not in system.content  # the reference is data, in the user turn
    assert "7 x 6 = 40" in system.content and "wrong product" in system.content  # few-shot, in the system turn
    (without,) = await rubric.judge(JudgeInput(prompt=item.prompt, seed=0), [cand])
    assert without.status == "abstain" and "reference" in without.reason and len(fake.requests) == 1


def test_a_criterion_without_text_in_the_template_or_the_panel_is_a_clear_error():
    config = JudgeConfig(name="x", rubric="compact.v1", criteria=[{"name": "elegance", "scale": [0, 3]}])
    judge = CompactJudge(config=config, backend=FakeBackend())
    with pytest.raises(ConfigError, match="elegance"):
        judge.prompt_for(ITEM, candidates(["Forty-two."])[0])


# ---- logprob-weighted scores ---------------------------------------------------------------------------------

def tokens(*parts):
    return [TokenLogprob(token=t, logprob=top.get(t, -0.1), top=top) for t, top in parts]


def test_value_offsets_find_top_level_values_not_text_inside_strings():
    raw = '{"reasoning": "a \\"score\\": 3 inside", "score" : 7, "nested": {"score": 1}}'
    offsets = value_offsets(raw)
    assert raw[offsets["score"]] == "7" and raw[offsets["reasoning"]] == '"'


def test_expected_score_over_single_digit_tokens():
    top = {"7": math.log(0.6), "8": math.log(0.3), "x": math.log(0.1)}
    completion = Completion(text='{"score": 7}', logprobs=tokens(('{"', {}), ("score", {}), ('":', {}), (" ", {}),
                                                                 ("7", top), ("}", {})))
    value, details = expected_score(completion, "score", 1, 10)
    assert value == pytest.approx((7 * 0.6 + 8 * 0.3) / 0.9)
    assert details["mass"] == pytest.approx(0.9) and details["distribution"] == {"7": 0.6667, "8": 0.3333}


def test_ten_split_into_two_tokens_uses_the_next_position():
    first = {"1": math.log(0.5), "9": math.log(0.5)}
    after_one = {"0": math.log(0.6), "}": math.log(0.4)}  # "10" 60%, "1" 40% of the "1" branch
    completion = Completion(text='{"score": 10}',
                            logprobs=tokens(('{"score": ', {}), ("1", first), ("0", after_one), ("}", {})))
    value, details = expected_score(completion, "score", 1, 10)
    assert value == pytest.approx(0.5 * 9 + 0.3 * 10 + 0.2 * 1)
    assert details["distribution"] == {"1": 0.2, "9": 0.5, "10": 0.3}


def test_clear_fallbacks_when_logprobs_are_missing_or_too_thin():
    plain = Completion(text='{"score": 7}')
    assert score_from(plain, "score", 7.0, 1, 10) == (7.0, {"score_method": "sampled",
                                                           "logprob_fallback": "the backend returned no logprobs"})
    top = {"7": math.log(0.2), "a": math.log(0.8)}
    thin = Completion(text='{"score": 7}', logprobs=tokens(('{"score": ', {}), ("7", top), ("}", {})))
    value, details = score_from(thin, "score", 7.0, 1, 10)
    assert value == 7.0 and "0.20 of the probability" in details["logprob_fallback"]


async def test_logprob_rubric_asks_for_top_logprobs_and_records_the_fallback():
    config = JudgeConfig(name="correctness", rubric="correctness.v1", score_method="logprob", top_logprobs=5)
    fake = FakeBackend(['{"reasoning": "fine", "score": 8}'])
    (verdict,) = await RubricJudge(config=config, backend=fake).judge(ITEM, candidates(["Forty-two."]))
    assert fake.requests[0][1].top_logprobs == 5
    assert verdict.score == 8 and verdict.details["logprob"][0]["score_method"] == "sampled"


async def test_logprob_expected_score_on_the_real_local_model(local_backend):
    """One real call: llama.cpp returns top logprobs (a logits_all instance), and the score is their expectation."""
    config = JudgeConfig(name="correctness", rubric="correctness.v1", scale=[1, 5], score_method="logprob")
    judge = RubricJudge(config=config, backend=local_backend, max_tokens=96)
    (verdict,) = await judge.judge(ITEM, candidates(["Six times seven is 42."]))
    if verdict.status != "ok":
        pytest.fail(f"the local model gave no valid verdict: {verdict.reason}")
    how = verdict.details["logprob"][0]
    assert how["score_method"] == "logprob", how
    assert sum(how["distribution"].values()) == pytest.approx(1, abs=1e-3)
    assert 1 <= verdict.score <= 5 and verdict.score == pytest.approx(
        sum(int(k) * p for k, p in how["distribution"].items()), abs=1e-3)
    assert json.loads(verdict.raw)["score"] == how["sampled"]
