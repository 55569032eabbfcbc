import pytest

from bestofn.errors import BackendError, ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.config.panel import load_panel
from bestofn.records import Candidate, Message, text_id
from tests.fake_backend import FakeBackend

PANEL = load_panel("default")
ITEM = JudgeInput(prompt=[Message(role="user", content="What is 2+2?")], seed=0)
CAND = Candidate(id=text_id("4"), index=0, text="4", model="fake")


def judge_with(backend, name="correctness"):
    [judge] = [j for j in build_judges(PANEL, lambda cfg: backend) if j.name == name]
    return judge


async def test_valid_first_try():
    fake = FakeBackend(['{"reasoning": "right", "score": 9}'])
    [verdict] = await judge_with(fake).judge(ITEM, [CAND])
    assert verdict.status == "ok" and verdict.score == 9 and verdict.normalized == pytest.approx(8 / 9)
    assert verdict.attempts == 1 and verdict.kind == "rubric" and verdict.template_sha256
    messages, params = fake.requests[0]
    assert params.json_schema["properties"]["score"]["enum"][-1] == 10 and params.temperature == 0.0
    assert messages[0].role == "system" and "4" not in messages[0].content.split("Score from")[0]
    assert messages[-1].content.rstrip().endswith(">") and "\n4\n" in messages[-1].content


async def test_one_reask_with_the_reason_then_ok():
    fake = FakeBackend(['{"reasoning": "x", "score": 150}', '{"reasoning": "fixed", "score": 7}'])
    [verdict] = await judge_with(fake).judge(ITEM, [CAND])
    assert verdict.status == "ok" and verdict.score == 7 and verdict.attempts == 2
    retry_messages, _ = fake.requests[1]
    assert retry_messages[-2].role == "assistant" and "150" in retry_messages[-2].content
    assert "Input should be 1, 2" in retry_messages[-1].content


async def test_invalid_after_the_reask_is_a_verdict_with_a_reason_not_a_number():
    fake = FakeBackend([('{"reasoning": "cut', "length"), "8/10"])
    [verdict] = await judge_with(fake).judge(ITEM, [CAND])
    assert verdict.status == "invalid" and verdict.score is None and verdict.normalized is None
    assert "max_tokens" in verdict.reason and verdict.attempts == 2


async def test_with_samples_only_the_invalid_sample_is_reasked_once_and_the_reask_shows_the_schema(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('name = "k"\n[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\nsamples = 2\n')
    fake = FakeBackend(['{"reasoning": "a", "score": 6}', '{"reasoning": "b", "score": 0}',
                        '{"reasoning": "c", "score": 8}'])
    [judge] = build_judges(load_panel(path), lambda cfg: fake)
    [verdict] = await judge.judge(ITEM, [CAND])
    assert len(fake.requests) == 2 and fake.requests[1][1].n == 1
    retry = fake.requests[1][0]
    assert retry[-2].content == '{"reasoning": "b", "score": 0}' and "score: Input should be 1, 2" in retry[-1].content
    assert "JSON schema" in retry[-1].content and '"enum":[1,2,3,4,5,6,7,8,9,10]' in retry[-1].content
    assert verdict.status == "ok" and verdict.details["samples"] == [6, 8] and verdict.attempts == 2


async def test_two_invalid_samples_give_one_reason_per_distinct_problem_and_no_number(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('name = "k"\n[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\nsamples = 2\n')
    fake = FakeBackend(['{"reasoning": "a", "score": 11}', ('{"reasoning": "b', "length"),
                        '{"reasoning": "a", "score": 12}', '{"reasoning": "b", "score": 13}'])
    [judge] = build_judges(load_panel(path), lambda cfg: fake)
    [verdict] = await judge.judge(ITEM, [CAND])
    assert len(fake.requests) == 3 and verdict.attempts == 3  # one call for both samples, one re-ask each
    assert verdict.status == "invalid" and verdict.score is None and verdict.normalized is None
    assert verdict.reason.count("score: Input should be 1, 2") == 1 and "max_tokens" in verdict.reason


async def test_backend_failure_is_an_error_verdict():
    class Broken(FakeBackend):
        async def sample(self, messages, params):
            raise BackendError("fake", "connection refused")

    [verdict] = await judge_with(Broken()).judge(ITEM, [CAND])
    assert verdict.status == "error" and "connection refused" in verdict.reason


async def test_samples_are_averaged_with_their_spread(tmp_path):
    path = tmp_path / "k.toml"
    path.write_text('name = "k"\n[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\nsamples = 3\n')
    fake = FakeBackend(['{"reasoning": "a", "score": 6}', '{"reasoning": "b", "score": 8}',
                        '{"reasoning": "c", "score": 10}'])
    [judge] = build_judges(load_panel(path), lambda cfg: fake)
    [verdict] = await judge.judge(ITEM, [CAND])
    assert verdict.score == 8 and verdict.details["samples"] == [6, 8, 10]
    assert verdict.details["spread"] == pytest.approx(1.633, abs=1e-3)


@pytest.mark.parametrize(
    "toml, message",
    [
        ('name = "x"\n', "judge: Field required"),
        ('name = "x"\nquorum = 5\n[[judge]]\nname = "a"\nrubric = "correctness.v1"\n', "quorum 5"),
        ('name = "x"\n[[judge]]\nname = "a"\nrubric = "correctness.v1"\nscale = [5, 1]\n', "low < high"),
        ('name = "x"\n[[judge]]\nname = "a"\nrubirc = "correctness.v1"\n', "rubirc"),
        ('name = "x"\n[[judge]\n', "panel file"),
    ],
)
def test_bad_panels_are_clear_errors(tmp_path, toml, message):
    path = tmp_path / "bad.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message) as info:
        load_panel(path)
    assert str(path) in str(info.value)


def test_unknown_panel_lists_the_builtin_ones():
    with pytest.raises(ConfigError, match="unknown panel 'nope'.*default"):
        load_panel("nope")


async def test_the_reasoning_budget_reaches_the_backend_default_or_from_the_panel(tmp_path):
    from bestofn.judging.base import DEFAULT_REASONING_TOKENS

    fake = FakeBackend(['{"reasoning": "right", "score": 9}'] * 2)
    await judge_with(fake).judge(ITEM, [CAND])
    panel = tmp_path / "brief.toml"
    panel.write_text('name = "brief"\n\n[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\n'
                     'reasoning_tokens = 20\n', encoding="utf-8")
    [judge] = build_judges(load_panel(panel), lambda cfg: fake)
    await judge.judge(ITEM, [CAND])
    assert [params.close_strings_at for _, params in fake.requests] == [DEFAULT_REASONING_TOKENS, 20]
