"""A judge's reasoning budget (SamplingParams.close_strings_at, the panel key `reasoning_tokens`) on the real
SmolLM2: past it, the batched engine ends the JSON string the reply is writing, the model goes on to its score
under the grammar, and the reply is valid and bounded where it would have run to max_tokens; the sequential
engine and the call cache of backends without the budget are untouched by it."""

from __future__ import annotations

import asyncio
import json

import pytest

from bestofn.backends import local, local_batch, local_sequence
from bestofn.backends.base import SamplingParams
from bestofn.backends.cache import call_key
from bestofn.config.panel import load_panel
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.structured import json_schema, parse_reply, rubric_output_model
from bestofn.records import Candidate, Message, text_id

#: a prompt on which the embedded model's greedy reasoning runs on past any max_tokens ("10000000...")
RAMBLE = [Message(role="user", content="Explain how to improve time management skills. "
                                       "Reply as JSON with reasoning and score.")]
MODEL = rubric_output_model(1, 10)


def backend(engine: str) -> local.LocalBackend:
    b = local.LocalBackend()
    b.engine, b.closes_strings = engine, engine == "batched"
    return b


def ask(b: local.LocalBackend, close: int | None, max_tokens: int = 96):
    params = SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, seed=0, json_schema=json_schema(MODEL),
                            close_strings_at=close)
    (completion,) = asyncio.run(b.sample(RAMBLE, params))
    return completion


def test_past_the_budget_the_string_ends_and_the_reply_goes_on_to_a_valid_score(monkeypatch):
    monkeypatch.delenv(local_batch.ENV, raising=False)
    b = backend("batched")
    free = ask(b, None)
    assert free.finish_reason == "length" and free.usage.completion_tokens == 96  # the ramble, unbounded
    cut = ask(b, 12)
    obj, problem = parse_reply(cut.text, cut.finish_reason, MODEL)
    assert problem is None and 1 <= obj.score <= 10 and cut.finish_reason == "budget"
    # the model's own reasoning up to the budget (a lone sequence decodes as it would without one), then `"`
    head = cut.text[: cut.text.index(obj.reasoning) + len(obj.reasoning)]
    assert free.text.startswith(head) and 12 <= cut.usage.completion_tokens <= 12 + 12
    # a reply that ends its string before the budget is the reply it would be without one
    short = ask(b, 90, max_tokens=8)
    assert short.text == ask(b, None, max_tokens=8).text and short.finish_reason == "length"


def test_a_tokenizer_without_a_lone_quote_token_keeps_no_budget(monkeypatch):
    """Another model's tokenizer may spell `"` as two tokens or with a space before it: the call goes on as
    without a budget (to max_tokens), not an error (simulated on SmolLM2's own tokenizer)."""
    monkeypatch.delenv(local_batch.ENV, raising=False)
    b = backend("batched")
    llama, _ = b._ensure()
    real = type(llama).tokenize

    def tokenize(self, text, *args, **kwargs):
        return [*real(self, b" ", *args, **kwargs), *real(self, text, *args, **kwargs)] if text == b'"' else \
            real(self, text, *args, **kwargs)

    monkeypatch.setattr(type(llama), "tokenize", tokenize)
    assert local_sequence.quote_token(llama) is None
    cut = ask(b, 12)
    assert cut.finish_reason == "length" and cut.usage.completion_tokens == 96


def test_the_sequential_engine_keeps_no_budget_and_the_cache_keys_only_where_it_is_kept(monkeypatch):
    monkeypatch.delenv(local_batch.ENV, raising=False)
    seq = backend("sequential")
    assert ask(seq, 12).text == ask(seq, None).text
    params = SamplingParams(max_tokens=8, seed=0)
    with_budget = params.model_copy(update={"close_strings_at": 12})
    assert call_key(seq, RAMBLE, with_budget, 0) == call_key(seq, RAMBLE, params, 0)  # ignored: same reply
    batched = backend("batched")
    assert call_key(batched, RAMBLE, with_budget, 0) != call_key(batched, RAMBLE, params, 0)
    assert call_key(batched, RAMBLE, params, 0) == call_key(seq, RAMBLE, params, 0)  # no budget: keys as before


def test_the_panel_key_bounds_a_rubric_verdict_and_its_details_say_so(tmp_path, monkeypatch):
    monkeypatch.delenv(local_batch.ENV, raising=False)
    panel = tmp_path / "brief.toml"
    panel.write_text('name = "brief"\n\n[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\n'
                     'reasoning_tokens = 4\n', encoding="utf-8")
    b = backend("batched")
    (judge,) = build_judges(load_panel(panel), lambda cfg: b)
    item = JudgeInput(prompt=[Message(role="user", content="Why is the sky blue?")], seed=0)
    text = "Sunlight scatters off air molecules, and blue light scatters the most."
    (verdict,) = asyncio.run(judge.judge(item, [Candidate(id=text_id(text), index=0, text=text, model="local")]))
    assert verdict.status == "ok" and verdict.details["reasoning_cut"] == 1 and verdict.attempts == 1
    assert verdict.usage.completion_tokens <= 4 + 12, verdict.raw
    assert json.loads(verdict.raw)["reasoning"] == verdict.reasoning


def test_a_listwise_judge_has_no_reasoning_to_budget(tmp_path):
    panel = tmp_path / "rank.toml"
    panel.write_text('name = "rank"\n\n[[judge]]\nname = "rank"\nkind = "listwise"\nrubric = "listwise.v1"\n'
                     'reasoning_tokens = 64\n', encoding="utf-8")
    with pytest.raises(ConfigError, match="reasoning_tokens"):
        load_panel(panel)
