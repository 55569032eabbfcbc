"""`openai:MODEL` through the official SDK, against the tests' own OpenAI-compatible server on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import time
import openai
import pytest
from pydantic import BaseModel, Field

from bestofn.backends.base import SamplingParams
from bestofn.backends.openai import OpenAIBackend
from bestofn.errors import AuthError, BackendError, RateLimitError, UnknownModelError
from bestofn.records import Message

MSGS = [Message(role="system", content="Be brief."), Message(role="user", content="Why is the sky blue?")]


class Verdict(BaseModel):
    reasoning: str
    score: int = Field(ge=1, le=10)


def backend(srv, **kw) -> OpenAIBackend:
    kw.setdefault("max_retries", 2)
    return OpenAIBackend("gpt-4o-mini", base_url=srv.base_url, api_key="sk-test", **kw)


async def test_n_in_one_request_with_seed_logprobs_and_usage(loopback):
    b = backend(loopback)
    out = await b.sample(MSGS, SamplingParams(n=5, seed=7, temperature=0.5, max_tokens=64, top_logprobs=2))
    assert loopback.count == 1
    body = loopback.chat_requests()[0].body
    assert body["n"] == 5 and body["seed"] == 7 and body["temperature"] == 0.5 and body["max_tokens"] == 64
    assert body["logprobs"] is True and body["top_logprobs"] == 2
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    assert len(out) == 5 and len({c.text for c in out}) == 5
    first = out[0].logprobs
    assert first is not None and first[0].token == out[0].text.split()[0] and len(first[0].top) == 2
    # usage: the prompt counted once, the completion tokens add up to the response's total
    assert out[0].usage.prompt_tokens == 2 + 5 and all(c.usage.prompt_tokens == 0 for c in out[1:])
    assert sum(c.usage.completion_tokens for c in out) == sum(len(c.text.split()) for c in out)


async def test_strict_json_schema_response_format(loopback):
    b = backend(loopback)
    schema = Verdict.model_json_schema() | {"additionalProperties": False}
    out = await b.sample(MSGS, SamplingParams(n=3, json_schema=schema))
    fmt = loopback.chat_requests()[0].body["response_format"]
    assert fmt["type"] == "json_schema" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["name"] == "Verdict" and fmt["json_schema"]["schema"]["additionalProperties"] is False
    scores = [Verdict.model_validate_json(c.text).score for c in out]
    assert all(1 <= s <= 10 for s in scores)


async def test_property_order_is_kept(loopback):
    class ThinkFirst(BaseModel):  # reasoning before the verdict: the order the model writes them in
        reasoning: str
        answer: str

    await backend(loopback).sample(MSGS, SamplingParams(json_schema=ThinkFirst.model_json_schema()))
    sent = loopback.chat_requests()[0].body["response_format"]["json_schema"]["schema"]
    assert list(sent["properties"]) == ["reasoning", "answer"]


async def test_schema_with_optional_field_is_sent_non_strict(loopback):
    class Loose(BaseModel):
        answer: str
        note: str | None = None

    await backend(loopback).sample(MSGS, SamplingParams(json_schema=Loose.model_json_schema()))
    assert loopback.chat_requests()[0].body["response_format"]["json_schema"]["strict"] is False


async def test_callers_own_clients_async_and_sync(loopback):
    mine = openai.AsyncOpenAI(base_url=loopback.base_url, api_key="sk-mine", max_retries=0)
    out = await OpenAIBackend("gpt-4o-mini", client=mine).sample(MSGS, SamplingParams(n=2))
    assert len(out) == 2
    assert loopback.requests[-1].headers["authorization"] == "Bearer sk-mine"
    await mine.close()  # the caller's client stays the caller's: we never close it
    sync = openai.OpenAI(base_url=loopback.base_url, api_key="sk-sync", max_retries=0)
    out = await OpenAIBackend("gpt-4o-mini", client=sync).sample(MSGS, SamplingParams(n=2))
    assert len(out) == 2 and loopback.requests[-1].headers["authorization"] == "Bearer sk-sync"
    sync.close()
    with pytest.raises(TypeError, match="AsyncOpenAI"):
        OpenAIBackend("gpt-4o-mini", client=object())


async def test_missing_key_is_an_auth_error(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(AuthError, match="openai:gpt-4o-mini: no API key: set OPENAI_API_KEY"):
        await OpenAIBackend("gpt-4o-mini").sample(MSGS, SamplingParams())


# ---------------------------------------------------------------------------------------- retries, errors


async def test_429_retries_honour_retry_after_then_succeed(loopback):
    loopback.inject(429, times=2, retry_after=0.1)
    out = await backend(loopback, max_retries=2).sample(MSGS, SamplingParams())
    assert len(out) == 1
    assert [r.status for r in loopback.chat_requests()] == [429, 429, 200]
    gaps = [b.at - a.at for a, b in zip(loopback.chat_requests(), loopback.chat_requests()[1:])]
    # waited as told: 0.1 s, not the SDK's own exponential backoff (which starts at 0.375-0.5 s)
    assert all(0.09 <= g < 0.35 for g in gaps), gaps


async def test_429_exhausted_is_a_rate_limit_error_after_exactly_max_retries(loopback):
    loopback.inject(429, times=10, retry_after=0.01)
    with pytest.raises(RateLimitError, match=r"openai:gpt-4o-mini: rate limited \(429\)"):
        await backend(loopback, max_retries=3).sample(MSGS, SamplingParams())
    assert loopback.count == 4  # 1 + 3 retries, one retry loop (the SDK's)


@pytest.mark.parametrize("status", [500, 503])
async def test_server_errors_are_retried(loopback, status):
    loopback.inject(status, times=1, retry_after=0.01)
    out = await backend(loopback).sample(MSGS, SamplingParams(n=2))
    assert len(out) == 2 and [r.status for r in loopback.chat_requests()] == [status, 200]


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [(400, BackendError, "HTTP 400"), (401, AuthError, "authentication failed"), (404, UnknownModelError, "unknown model")],
)
async def test_client_errors_are_not_retried(loopback, status, error, message):
    loopback.inject(status, times=5)
    with pytest.raises(error, match=f"openai:gpt-4o-mini: {message}"):
        await backend(loopback, max_retries=3).sample(MSGS, SamplingParams())
    assert loopback.count == 1


async def test_unknown_model_from_the_server(loopback):
    loopback.models = ["gpt-4o-mini"]
    with pytest.raises(UnknownModelError, match="unknown model 'gpt-nope'"):
        await OpenAIBackend("gpt-nope", base_url=loopback.base_url, api_key="x").sample(MSGS, SamplingParams())


# ---------------------------------------------------------------------------------------- limits


async def test_concurrency_limit_holds_at_the_server(loopback):
    loopback.latency = 0.05
    b = backend(loopback, concurrency=3)
    await asyncio.gather(*(b.sample([Message(role="user", content=str(i))], SamplingParams()) for i in range(12)))
    assert loopback.count == 12 and loopback.max_in_flight == 3


async def test_requests_per_minute_limit_spreads_requests(loopback):
    b = backend(loopback, rpm=600)  # 10 per second: a burst of 10, then one every 100 ms
    started = time.monotonic()
    await asyncio.gather(*(b.sample([Message(role="user", content=str(i))], SamplingParams()) for i in range(13)))
    arrivals = sorted(r.at - started for r in loopback.chat_requests())
    # the 3 past the burst waited for the bucket to drain (a busy machine can only make them later)
    assert arrivals[10] >= 0.09 and arrivals[11] >= 0.19 and arrivals[12] >= 0.29, arrivals


# ---------------------------------------------------------------------------------------- pipeline


async def test_selection_cost_in_usd_from_the_price_table(loopback):
    from bestofn.pipeline.select import aselect

    b = backend(loopback)
    sel = await aselect("Why is the sky blue?", n=3, model=b, judge_model=b, cache=False, max_tokens=64)
    assert sel.best is not None and all(v.status == "ok" for v in sel.verdicts)
    cost = sel.cost
    assert cost.calls == 3 + 4 * len({c.id for c in sel.candidates}) and cost.prompt_tokens > 0
    assert cost.usd == pytest.approx((cost.prompt_tokens * 0.15 + cost.completion_tokens * 0.60) / 1e6, abs=1e-6)


async def test_price_override_and_unknown_price(loopback, monkeypatch):
    from bestofn.backends import pricing
    from bestofn.backends.meter import Meter, MeteredBackend
    from bestofn.records import Usage

    mtok = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)
    assert pricing.usd_for("openai:gpt-4o-mini-2024-07-18", mtok) == pytest.approx(0.15 + 0.60)  # its snapshot
    assert pricing.usd_for("vllm:whatever", mtok) is None
    meter = Meter()
    await MeteredBackend(backend(loopback, price=(1.0, 2.0)), meter).sample(MSGS, SamplingParams(n=2))
    spent = meter.spend
    assert spent.usd == pytest.approx((spent.prompt_tokens * 1.0 + spent.completion_tokens * 2.0) / 1e6)
    assert spent.unpriced_calls == 0
    monkeypatch.setattr(pricing, "_overrides", {})
    pricing.set_price("openai:my-finetune", 10.0, 20.0)
    assert pricing.usd_for("openai:my-finetune", mtok) == pytest.approx(30.0)
    assert pricing.usd_for("openai:my-finetune-v2", mtok) is None  # exact specs: never a namesake's price


def test_sync_select_twice_reuses_the_backend_across_event_loops(loopback):
    from bestofn.pipeline.select import select

    b = backend(loopback)
    for seed in (1, 2):
        sel = select(json.dumps({"q": seed}), n=2, model=b, judge_model=b, cache=False, seed=seed, max_tokens=32)
        assert len(sel.candidates) == 2 and sel.best is not None


@pytest.mark.network
@pytest.mark.skipif(not os.environ.get("OPENAI_API_KEY"), reason="calls the real OpenAI API; needs OPENAI_API_KEY")
async def test_real_openai_n_schema_logprobs():
    b = OpenAIBackend(os.environ.get("BESTOFN_OPENAI_TEST_MODEL", "gpt-4o-mini"), max_retries=2)
    out = await b.sample(MSGS, SamplingParams(n=2, max_tokens=64, json_schema=Verdict.model_json_schema(), top_logprobs=1))
    assert len(out) == 2 and all(1 <= Verdict.model_validate_json(c.text).score <= 10 for c in out)
    assert out[0].logprobs and out[0].usage.prompt_tokens > 0


@pytest.mark.parametrize("client", ["async", "sync"])
@pytest.mark.parametrize("kind", ["plain", "schema", "logprobs"])
async def test_requests_are_what_the_sdks_create_sends(loopback, kind, client):
    """The backend posts its own JSON body through the SDK's request path (OpenAIChat.create: no typed transform
    of the params), on its own async client or a caller's sync one (in a worker thread): the same path, JSON body
    and auth as `chat.completions.create` with the same arguments."""
    params = {"plain": SamplingParams(n=2, seed=3, temperature=0.5, max_tokens=32),
              "schema": SamplingParams(json_schema=Verdict.model_json_schema() | {"additionalProperties": False}),
              "logprobs": SamplingParams(top_logprobs=2)}[kind]
    given = openai.OpenAI(base_url=loopback.base_url, api_key="sk-test", max_retries=0) if client == "sync" else None
    await (OpenAIBackend("gpt-4o-mini", client=given) if given else backend(loopback)).sample(MSGS, params)
    from bestofn.backends._openai_wire import json_schema_format

    sdk = openai.AsyncOpenAI(base_url=loopback.base_url, api_key="sk-test", max_retries=0)
    extra = {"response_format": json_schema_format(params.json_schema)} if params.json_schema else {}
    extra |= {"logprobs": True, "top_logprobs": 2} if params.top_logprobs else {}
    await sdk.chat.completions.create(model="gpt-4o-mini", messages=[m.model_dump() for m in MSGS],
                                      temperature=params.temperature, max_tokens=params.max_tokens, seed=params.seed,
                                      **({"n": params.n} if params.n != 1 else {}), **extra)
    await sdk.close()
    ours, theirs = loopback.chat_requests()
    assert (ours.method, ours.path, ours.body) == (theirs.method, theirs.path, theirs.body)
    for header in ("authorization", "content-type", "accept"):
        assert ours.headers.get(header) == theirs.headers.get(header), header
    assert ours.headers["authorization"] == "Bearer sk-test"


async def test_an_admin_key_is_never_sent_where_create_would_not_send_it(loopback, monkeypatch):
    """`create` authenticates a chat call with the API key alone: a client holding only an admin key refuses the
    call before sending it, and so does the backend's post (its `security` option is create's)."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)

    def admin_only() -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(base_url=loopback.base_url, api_key=None, admin_api_key="sk-admin", max_retries=0)

    with pytest.raises(TypeError, match="Could not resolve authentication"):
        await admin_only().chat.completions.create(model="gpt-4o-mini", messages=[m.model_dump() for m in MSGS])
    with pytest.raises(TypeError, match="Could not resolve authentication"):
        await OpenAIBackend("gpt-4o-mini", client=admin_only()).sample(MSGS, SamplingParams())
    assert loopback.chat_requests() == []
