"""The embedded model's JSON-schema grammar (bestofn.backends.local_sequence.json_grammar) keeps raw control
characters out of strings, which llama-cpp-python's own grammar lets in (a reply no JSON parser takes); both
engines decode under it. Checked on the real grammar sampler with SmolLM2's vocabulary."""

from __future__ import annotations

import asyncio
import json

from bestofn.backends import local, local_sequence
from bestofn.backends.base import SamplingParams
from bestofn.judging.structured import json_schema, rubric_output_model
from bestofn.records import Message

SCHEMA = json_schema(rubric_output_model(1, 10))
OPENED = b'{ "reasoning": "It is right'  # a reply that is inside its reasoning string


def accepts_after(llama, grammar, text: bytes, piece: bytes) -> bool:
    """Whether `grammar`, having accepted the tokens of `text`, accepts the token `piece` next."""
    import llama_cpp.llama_cpp as C

    call = {"grammar": grammar, "temperature": 0.0, "repeat_penalty": 1.0, "frequency_penalty": 0.0,
            "presence_penalty": 0.0}
    sampler = local_sequence.Sampler(llama, call, seed=0)
    try:
        for token in llama.tokenize(text, add_bos=False, special=False):
            assert sampler._accepts(token), text
            C.llama_sampler_accept(sampler.grammar, token)
        (token,) = llama.tokenize(piece, add_bos=False, special=False)
        return sampler._accepts(token)
    finally:
        sampler.close()


def test_a_newline_inside_a_string_is_refused_and_an_escaped_one_is_taken(local_backend):
    from llama_cpp.llama_grammar import LlamaGrammar

    llama, _ = local_backend._ensure()
    theirs = LlamaGrammar.from_json_schema(json.dumps(SCHEMA), verbose=False)
    ours = local_sequence.json_grammar(SCHEMA)
    assert accepts_after(llama, theirs, OPENED, b"\n")  # llama-cpp-python 0.3.36's grammar: a raw newline
    assert not accepts_after(llama, ours, OPENED, b"\n")
    assert not accepts_after(llama, ours, OPENED, b"\t")
    assert accepts_after(llama, ours, OPENED, b"\\")  # an escape sequence still opens
    assert accepts_after(llama, ours, OPENED, b" and")


def test_both_engines_decode_under_it(monkeypatch):
    made: list[str] = []
    real = local_sequence.json_grammar

    def spy(schema):
        made.append(json.dumps(schema))
        return real(schema)

    monkeypatch.setattr(local_sequence, "json_grammar", spy)
    monkeypatch.setattr(local, "json_grammar", spy)
    params = SamplingParams(n=1, temperature=0.0, max_tokens=24, seed=0, json_schema=SCHEMA)
    for engine in ("batched", "sequential"):
        b = local.LocalBackend()
        b.engine = engine
        (reply,) = asyncio.run(b.sample([Message(role="user", content="Is the sky blue? Grade it.")], params))
        assert "\n" not in reply.text
    assert made == [json.dumps(SCHEMA)] * 2
