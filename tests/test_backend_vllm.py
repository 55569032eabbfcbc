"""`vllm:MODEL` (any OpenAI-compatible server) against the tests' own server on loopback, in each flavour;
and the pipeline's generation/judging overlap. The real llama-cpp-python server: test_backend_llama_server.py."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

from bestofn.backends import load_backend
from bestofn.backends.base import SamplingParams
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.errors import ConfigError, RateLimitError
from bestofn.records import Message
from tests.loopback import LoopbackServer

MSGS = [Message(role="user", content="Name a colour.")]


class Pick(BaseModel):
    colour: str
    confidence: int = Field(ge=0, le=100)


SCHEMA = Pick.model_json_schema()


def chat_bodies(srv: LoopbackServer) -> list[dict]:
    return [r.body for r in srv.chat_requests()]


async def test_vllm_flavour_takes_n_and_json_schema_in_one_request():
    with LoopbackServer(flavour="vllm") as srv:
        b = VLLMServerBackend("m", base_url=srv.base_url)
        out = await b.sample(MSGS, SamplingParams(n=4, seed=3, json_schema=SCHEMA))
        assert await b.resolve() == "vllm" and not b.serial
        assert [r.path for r in srv.requests] == ["/v1/models", "/v1/chat/completions"]
        (body,) = chat_bodies(srv)
        assert body["n"] == 4 and body["seed"] == 3 and body["response_format"]["type"] == "json_schema"
        assert [Pick.model_validate_json(c.text).confidence in range(101) for c in out] == [True] * 4


async def test_llama_cpp_flavour_fans_out_with_seeds_and_json_object_schema():
    with LoopbackServer(flavour="llama-cpp", max_choices=1) as srv:
        b = VLLMServerBackend("m", base_url=srv.base_url)
        out = await b.sample(MSGS, SamplingParams(n=3, seed=10, json_schema=SCHEMA))
        assert b.flavour == "auto" and await b.resolve() == "llama-cpp" and b.serial
        bodies = chat_bodies(srv)
        assert sorted(body["seed"] for body in bodies) == [10, 11, 12] and all("n" not in body for body in bodies)
        assert all(body["response_format"] == {"type": "json_object", "schema": SCHEMA} for body in bodies)
        assert len(out) == 3 and len({c.text for c in out}) == 3
        assert all(Pick.model_validate_json(c.text) for c in out)
        assert srv.max_in_flight == 1  # a one-at-a-time server gets one request at a time, in order


async def test_unknown_server_returning_fewer_choices_is_fanned_out_then_remembered():
    with LoopbackServer(flavour="openai", max_choices=1, owned_by="someone") as srv:
        b = VLLMServerBackend("m", base_url=srv.base_url)
        out = await b.sample(MSGS, SamplingParams(n=4, seed=0))
        assert len(out) == 4 and len({c.text for c in out}) == 4
        bodies = chat_bodies(srv)
        assert bodies[0]["n"] == 4 and sorted(x["seed"] for x in bodies[1:]) == [1, 2, 3]
        srv.reset()
        await b.sample(MSGS, SamplingParams(n=4, seed=0))
        assert srv.count == 4 and all("n" not in x for x in chat_bodies(srv))  # straight to fan-out now


async def test_unknown_server_rejecting_json_schema_falls_back_to_json_object_without_retries():
    # llama-cpp-python's server behaviour (500 on json_schema) behind an unrecognised owned_by
    with LoopbackServer(flavour="llama-cpp", owned_by="someone") as srv:
        b = VLLMServerBackend("m", base_url=srv.base_url, max_retries=2)
        out = await b.sample(MSGS, SamplingParams(json_schema=SCHEMA))
        assert Pick.model_validate_json(out[0].text)
        assert [(r.body["response_format"]["type"], r.status) for r in srv.chat_requests()] == [
            ("json_schema", 500), ("json_object", 200)]  # the probe was not retried
        srv.reset()
        await b.sample(MSGS, SamplingParams(json_schema=SCHEMA))
        assert [r.body["response_format"]["type"] for r in srv.chat_requests()] == ["json_object"]


async def test_named_flavour_skips_the_probe_and_model_comes_from_the_server():
    with LoopbackServer(flavour="vllm", models=["served-model"]) as srv:
        b = VLLMServerBackend("", base_url=srv.base_url, flavour="vllm")
        await b.sample(MSGS, SamplingParams())
        assert b.model == "served-model" and chat_bodies(srv)[0]["model"] == "served-model"
        named = VLLMServerBackend("served-model", base_url=srv.base_url, flavour="vllm")
        srv.reset()
        await named.sample(MSGS, SamplingParams())
        assert [r.path for r in srv.requests] == ["/v1/chat/completions"]


async def test_retries_on_429_then_typed_error(loopback):
    b = VLLMServerBackend("m", base_url=loopback.base_url, flavour="vllm", max_retries=1)
    loopback.inject(429, times=1, retry_after=0.01)
    assert len(await b.sample(MSGS, SamplingParams(n=2))) == 2 and loopback.count == 2
    loopback.reset()
    loopback.inject(429, times=5, retry_after=0.01)
    with pytest.raises(RateLimitError, match="^vllm:m: rate limited"):
        await b.sample(MSGS, SamplingParams(n=2))
    assert loopback.count == 2


def test_base_url_from_option_env_or_error(monkeypatch, loopback):
    monkeypatch.delenv("BESTOFN_BASE_URL", raising=False)
    with pytest.raises(ConfigError, match="vllm:x needs the server's URL: --base-url"):
        VLLMServerBackend("x")
    monkeypatch.setenv("BESTOFN_BASE_URL", loopback.base_url)
    assert load_backend("vllm:from-env").base_url == loopback.base_url
    with pytest.raises(ConfigError, match="unknown server flavour 'tgi'"):
        VLLMServerBackend("x", base_url=loopback.base_url, flavour="tgi")


# ---------------------------------------------------------------------------------------- overlap


async def test_each_candidate_is_judged_as_soon_as_it_exists():
    """A fan-out generator (one request per sample) whose samples take 0.05 .. 0.45 s: judge calls for the
    fast samples reach the server before the slowest sample is done, and the Selection is as usual."""
    from bestofn.pipeline.select import aselect

    with LoopbackServer(flavour="llama-server", max_choices=1) as srv:  # fans out, not serial
        def latency(req):
            body = req.body or {}
            return 0.0 if body.get("response_format") else 0.05 + 0.1 * (body.get("seed", 0) - 100)

        srv.latency_fn = latency
        gen = VLLMServerBackend("gen", base_url=srv.base_url)
        judge = VLLMServerBackend("judge", base_url=srv.base_url)
        sel = await aselect("Why is the sky blue?", n=5, model=gen, judge_model=judge, seed=100, cache=False)
        gens = [r for r in srv.chat_requests() if not r.body.get("response_format")]
        judges = [r for r in srv.chat_requests() if r.body.get("response_format")]
        assert len(gens) == 5 and len(judges) == 4 * 5
        last_sample_done = max(r.done for r in gens)
        assert sum(r.at < last_sample_done for r in judges) >= 4 * 3  # samples 0-2 were judged meanwhile
        # the Selection looks as if generation had finished first: sampling order, judge_all's verdict order
        assert [c.index for c in sel.candidates] == [0, 1, 2, 3, 4]
        names = [v.judge for v in sel.verdicts]
        assert names == sorted(names, key=["correctness", "safety", "helpfulness", "instruction_following"].index)
        for k in range(4):
            block = sel.verdicts[5 * k: 5 * k + 5]
            assert [v.candidate_ids[0] for v in block] == [c.id for c in sel.candidates]
        assert sel.cost.calls == 25 and sel.best is not None


async def test_serial_judges_still_run_judge_major_after_generation():
    """Judges on a serial server (llama-cpp-python's) wait for all candidates, then go judge by judge,
    candidate last (KV-cache order), even when the generator streams."""
    from bestofn.pipeline.select import aselect

    with (LoopbackServer(flavour="llama-server", max_choices=1) as gen_srv,
          LoopbackServer(flavour="llama-cpp", max_choices=1) as judge_srv):
        gen = VLLMServerBackend("gen", base_url=gen_srv.base_url)
        judge = VLLMServerBackend("judge", base_url=judge_srv.base_url)
        sel = await aselect("Why is the sky blue?", n=3, model=gen, judge_model=judge, seed=0, cache=False)
        assert judge.serial and not gen.serial
        first_judge_call = min(r.at for r in judge_srv.chat_requests())
        assert first_judge_call >= max(r.done for r in gen_srv.chat_requests())
        systems = [r.body["messages"][0]["content"] for r in judge_srv.chat_requests()]
        runs = [s for i, s in enumerate(systems) if i == 0 or s != systems[i - 1]]
        assert len(runs) == 4  # four blocks, one per judge: judge-major
        answers = [r.body["messages"][-1]["content"] for r in judge_srv.chat_requests()]
        texts = [c.text for c in sel.candidates if c.duplicate_of is None]
        assert len(answers) == 4 * len(texts)
        for k in range(4):  # within each judge's block, candidates in sampling order
            block = answers[len(texts) * k: len(texts) * (k + 1)]
            assert all(t in a for t, a in zip(texts, block))


@pytest.mark.parametrize("probe", ["500", "closed"])
async def test_a_failed_flavour_probe_warns_naming_the_url_and_the_flavour_assumed(probe):
    """A llama-cpp-python server whose GET /v1/models fails is taken for a generic one (parallel requests):
    the user is told, with the URL asked and the flavour assumed, instead of silently losing one-at-a-time."""
    from tests.loopback import Fault, error_body

    with LoopbackServer(flavour="llama-cpp", max_choices=1) as srv:
        broken = (500, error_body(500, "models route crashed")) if probe == "500" else Fault(200, action="reset")
        srv.hook = lambda req: broken if req.path.endswith("/models") else None
        b = VLLMServerBackend("m", base_url=srv.base_url, max_retries=0)
        with pytest.warns(UserWarning) as caught:
            out = await b.sample(MSGS, SamplingParams(n=2, seed=1))
        (warning,) = [w for w in caught if "flavour" in str(w.message)]
        message = str(warning.message)
        assert f"GET {srv.base_url}/models" in message and "'openai' flavour" in message, message
        assert "BESTOFN_SERVER_FLAVOUR=" in message and len(out) == 2 and b._resolved == "openai"
        assert any(r.path == "/v1/models" for r in srv.requests)


async def test_a_probe_that_answers_gives_no_warning():
    import warnings

    with LoopbackServer(flavour="llama-cpp", max_choices=1) as srv:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # any warning fails the test
            b = VLLMServerBackend("m", base_url=srv.base_url)
            assert await b.resolve() == "llama-cpp" and b.serial
