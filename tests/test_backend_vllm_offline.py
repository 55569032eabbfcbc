"""`vllm-offline:MODEL`: the translation of our request into vLLM's keyword arguments, checked against the
documented API of vLLM 0.12.0 (docs.vllm.ai/en/v0.12.0/api/vllm/sampling_params/). vLLM cannot run here
(no GPU; the `vllm` extra is not in `dev`): the real run is the `gpu` test, skipped with its reason."""

from __future__ import annotations

import importlib.util
import os

import pytest

from bestofn.backends.base import SamplingParams
from bestofn.backends.vllm_offline import VLLMOfflineBackend, sampling_kwargs
from bestofn.errors import ConfigError, MissingExtraError
from bestofn.records import Message

# vLLM 0.12.0: the fields of `SamplingParams` we may set, and of `StructuredOutputsParams`
# (`best_of` and the `guided_*` fields were removed upstream by then)
VLLM_SAMPLING_FIELDS = {
    "n", "presence_penalty", "frequency_penalty", "repetition_penalty", "temperature", "top_p", "top_k", "min_p",
    "seed", "stop", "stop_token_ids", "ignore_eos", "max_tokens", "min_tokens", "logprobs", "prompt_logprobs",
    "detokenize", "skip_special_tokens", "spaces_between_special_tokens", "include_stop_str_in_output",
    "output_kind", "structured_outputs", "logit_bias", "allowed_token_ids", "extra_args", "bad_words",
}
VLLM_STRUCTURED_FIELDS = {"json", "regex", "choice", "grammar", "json_object", "disable_any_whitespace",
                          "disable_additional_properties", "whitespace_pattern", "structural_tag"}
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
          "required": ["score"], "additionalProperties": False}


def test_plain_request():
    kw = sampling_kwargs(SamplingParams(n=8, temperature=0.7, max_tokens=256, seed=42))
    assert kw == {"n": 8, "temperature": 0.7, "max_tokens": 256, "seed": 42}
    assert set(kw) <= VLLM_SAMPLING_FIELDS


def test_json_schema_and_logprobs():
    kw = sampling_kwargs(SamplingParams(n=2, temperature=0.0, max_tokens=64, seed=1, json_schema=SCHEMA,
                                        top_logprobs=5))
    assert kw["structured_outputs"] == {"json": SCHEMA} and set(kw["structured_outputs"]) <= VLLM_STRUCTURED_FIELDS
    assert kw["logprobs"] == 5 and set(kw) <= VLLM_SAMPLING_FIELDS
    assert not {"best_of", "guided_json", "guided_decoding"} & set(kw)


def test_no_model_or_no_extra_is_a_clear_error():
    with pytest.raises(ConfigError, match="vllm-offline:MODEL"):
        VLLMOfflineBackend("")
    if importlib.util.find_spec("vllm") is None:
        backend = VLLMOfflineBackend("HuggingFaceTB/SmolLM2-135M-Instruct")
        with pytest.raises(MissingExtraError, match=r"pip install 'bestofn\[vllm\]'"):
            backend._ensure()


@pytest.mark.gpu
@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None or not os.environ.get("BESTOFN_VLLM_MODEL"),
    reason="needs a GPU, the `vllm` extra and BESTOFN_VLLM_MODEL (a model vLLM can load)",
)
async def test_real_vllm_n_and_structured_outputs():
    backend = VLLMOfflineBackend(os.environ["BESTOFN_VLLM_MODEL"], gpu_memory_utilization=0.5)
    messages = [Message(role="user", content="Rate the sky's blueness.")]
    plain, structured = await __import__("asyncio").gather(
        backend.sample(messages, SamplingParams(n=4, max_tokens=32, seed=0, top_logprobs=2)),
        backend.sample(messages, SamplingParams(n=2, max_tokens=32, seed=0, temperature=0.0, json_schema=SCHEMA)),
    )
    assert len(plain) == 4 and plain[0].logprobs and len(structured) == 2
    import json

    assert all(1 <= json.loads(c.text)["score"] <= 10 for c in structured)


class _Params:
    """Stand-ins for vLLM 0.12.0's `SamplingParams` / `StructuredOutputsParams`: they accept only the
    documented fields, so a misspelt keyword fails here as it would in vLLM."""

    def __init__(self, allowed: set[str], **kw):
        assert set(kw) <= allowed, set(kw) - allowed
        self.__dict__.update(kw)


class _StandInSampling:
    SamplingParams = staticmethod(lambda **kw: _Params(VLLM_SAMPLING_FIELDS, **kw))
    StructuredOutputsParams = staticmethod(lambda **kw: _Params(VLLM_STRUCTURED_FIELDS, **kw))


class _StandInLLM:
    """`LLM.chat(conversations, sampling_params=[...], use_tqdm=False) -> list[RequestOutput]`, shaped as vLLM's
    RequestOutput(prompt_token_ids, outputs=[CompletionOutput(text, token_ids, finish_reason, logprobs)])."""

    def __init__(self):
        self.calls = []

    def chat(self, conversations, sampling_params, use_tqdm):
        from types import SimpleNamespace as NS

        self.calls.append((conversations, sampling_params))
        return [
            NS(prompt_token_ids=[1, 2, 3], outputs=[
                NS(text=f"{conv[-1]['content']} #{i}", token_ids=[7, 8], finish_reason="stop", logprobs=None)
                for i in range(sp.n)
            ])
            for conv, sp in zip(conversations, sampling_params)
        ]


async def test_concurrent_calls_go_to_vllm_as_one_batch():
    import asyncio

    backend = VLLMOfflineBackend("some/model")
    backend._llm, backend._sampling = _StandInLLM(), _StandInSampling()
    outs = await asyncio.gather(*(
        backend.sample([Message(role="user", content=f"q{i}")], SamplingParams(n=i + 1, json_schema=SCHEMA if i else None))
        for i in range(5)
    ))
    assert len(backend._llm.calls) == 1  # one LLM.chat for the five calls
    conversations, params = backend._llm.calls[0]
    assert [c[-1]["content"] for c in conversations] == [f"q{i}" for i in range(5)]
    assert params[1].structured_outputs.json == SCHEMA and not hasattr(params[0], "structured_outputs")
    assert [len(o) for o in outs] == [1, 2, 3, 4, 5] and outs[2][1].text == "q2 #1"
    assert outs[2][0].usage.prompt_tokens == 3 and outs[2][1].usage.prompt_tokens == 0
