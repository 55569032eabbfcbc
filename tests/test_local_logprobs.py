"""The embedded model's top logprobs come from the last position's logits of its one llama.cpp instance, and they
are llama-cpp-python's own `logits_all` logprobs, token for token (the real SmolLM2 on both sides)."""

from __future__ import annotations

import pytest

from bestofn.backends import local
from bestofn.backends.base import SamplingParams
from bestofn.records import Message

PROMPT = [Message(role="user", content='Rate from 1 to 10 how true this is: "The sky is blue." Reply {"score": N}.')]
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer"}}, "required": ["score"]}


async def test_top_logprobs_are_llama_cpp_pythons_logits_all_ones(local_backend):
    # The prompt evaluated whole, as the reference does: after other calls, the model's cached common prefix is
    # kept and only the rest is evaluated, in batches whose sums round otherwise (by up to 0.04 in a logprob, measured
    # with flash attention on, after the compact and consensus tests' calls)
    (await local_backend._loaded())[0].reset()
    (mine,) = await local_backend.sample(PROMPT, SamplingParams(max_tokens=16, temperature=0, top_logprobs=4,
                                                                json_schema=SCHEMA))
    # the file the backend loaded (the embedded model's 16-bit weights where this CPU gets them), decoded as it is
    reference = local.llama_class()(model_path=str(local_backend.loaded_path), n_ctx=2048, verbose=False,
                                    logits_all=True, **local.llama_options(local_backend.weights != "original"))
    try:
        out = reference.create_chat_completion(
            messages=[m.model_dump() for m in PROMPT], temperature=0, max_tokens=16, logprobs=True, top_logprobs=4,
            response_format={"type": "json_object", "schema": SCHEMA})
    finally:
        reference.close()
    theirs = out["choices"][0]["logprobs"]["content"]
    assert mine.text == out["choices"][0]["message"]["content"] and mine.logprobs
    assert "".join(t.token for t in mine.logprobs) == mine.text
    assert len(mine.logprobs) == len(theirs) + 1  # and the step that ended the reply, as a token ""
    for ours, ref in zip(mine.logprobs, theirs):
        assert ours.token == ref["token"]
        assert ours.logprob == pytest.approx(ref["logprob"], abs=1e-3)
        top = {x["token"]: float(x["logprob"]) for x in ref["top_logprobs"]}
        if len(top) > 4:  # llama-cpp-python adds the sampled token when it is not among the top k; OpenAI does not
            del top[ref["token"]]
        assert ours.top == pytest.approx(top, abs=1e-3)
    end = mine.logprobs[-1]
    assert end.token == "" and "" in end.top and end.logprob == pytest.approx(end.top[""], abs=1e-6)


async def test_plain_and_logprob_calls_share_one_model_instance(local_backend):
    await local_backend.sample(PROMPT, SamplingParams(max_tokens=2, temperature=0))
    (scored,) = await local_backend.sample(PROMPT, SamplingParams(max_tokens=2, temperature=0, top_logprobs=2))
    assert scored.logprobs and all(len(t.top) <= 2 for t in scored.logprobs)
    mine = [key for key in local._models if key[0] == str(local_backend.loaded_path.resolve())]
    assert len(mine) == 1 and local._models[mine[0]][0]._logits_all is False
