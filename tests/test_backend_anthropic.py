"""`anthropic:MODEL` through the official SDK, its HTTP answered by an `httpx2.MockTransport` whose payloads
follow Anthropic's documented shapes (Messages API: message with text / tool_use blocks, error objects with
`overloaded_error` 529 and `rate_limit_error` 429 + retry-after). The SDK parses them into its typed blocks
and runs its own retries; we count requests at the transport."""

from __future__ import annotations

import asyncio
import json
import os
import random
from typing import Any, Callable

import anthropic
import httpx2
import pytest
from pydantic import BaseModel, Field

from bestofn.backends.anthropic import AnthropicBackend
from bestofn.backends.base import SamplingParams
from bestofn.errors import AuthError, BackendError, RateLimitError, UnknownModelError
from bestofn.records import Message
from tests.loopback import value_for

MODEL = "claude-haiku-4-5"
MSGS = [Message(role="system", content="You are terse."), Message(role="user", content="Name a colour.")]


class Pick(BaseModel):
    colour: str
    confidence: int = Field(ge=0, le=100)


def message(content: list[dict[str, Any]], stop_reason: str = "end_turn", *, input_tokens: int = 20,
            output_tokens: int = 7, cache_read: int = 0) -> dict[str, Any]:
    return {
        "id": "msg_01XFDUDYJgAACzvnptvVoYEL", "type": "message", "role": "assistant", "model": MODEL,
        "content": content, "stop_reason": stop_reason, "stop_sequence": None,
        "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read},
    }


def error(status: int, etype: str, text: str, headers: dict[str, str] | None = None) -> httpx2.Response:
    body = {"type": "error", "error": {"type": etype, "message": text}, "request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"}
    return httpx2.Response(status, json=body, headers=headers or {})


class Api:
    """The transport's handler: records every request body; `script` answers (default: a valid reply)."""

    def __init__(self, script: Callable[[dict[str, Any], int], httpx2.Response | None] | None = None):
        self.script = script
        self.bodies: list[dict[str, Any]] = []
        self.in_flight = self.max_in_flight = 0

    async def __call__(self, request: httpx2.Request) -> httpx2.Response:
        assert request.url.path == "/v1/messages" and request.headers["anthropic-version"]
        body = json.loads(request.content)
        self.bodies.append(body)
        k = len(self.bodies)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.01)
            reply = self.script(body, k) if self.script else None
            return reply or httpx2.Response(200, json=self.default(body, k))
        finally:
            self.in_flight -= 1

    @staticmethod
    def default(body: dict[str, Any], k: int) -> dict[str, Any]:
        """A valid reply; plain text differs per request (sampling), JSON is valid for the sent schema."""
        rng = random.Random(json.dumps([body, k], sort_keys=True))
        if "tools" in body:
            schema = body["tools"][0]["input_schema"]
            block = {"type": "tool_use", "id": "toolu_01A09q90qw90lq917835lq9", "name": body["tools"][0]["name"],
                     "input": value_for(schema, rng)}
            return message([block], "tool_use")
        fmt = (body.get("output_config") or {}).get("format")
        text = json.dumps(value_for(fmt["schema"], rng)) if fmt else f"Blue, surely ({rng.randint(0, 999)})."
        return message([{"type": "text", "text": text}])


def make(api: Api, **kw: Any) -> AnthropicBackend:
    max_retries = kw.pop("max_retries", 2)
    client = anthropic.AsyncAnthropic(
        api_key="sk-ant-test", max_retries=max_retries, http_client=httpx2.AsyncClient(transport=httpx2.MockTransport(api))
    )
    return AnthropicBackend(MODEL, client=client, **kw)


async def test_fan_out_system_top_level_and_usage():
    api = Api(lambda body, k: None)
    api.script = lambda body, k: httpx2.Response(200, json=message(
        [{"type": "text", "text": f"Blue {k}."}], input_tokens=20, output_tokens=3, cache_read=100))
    out = await make(api).sample(MSGS, SamplingParams(n=4, temperature=1.5, max_tokens=32, seed=5))
    assert len(api.bodies) == 4 and api.max_in_flight == 4  # n concurrent requests
    body = api.bodies[0]
    assert body["system"] == [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"] == [{"role": "user", "content": "Name a colour."}]
    # API version 2026-10-21 (SDK 2.x) answers 400 to any sampling parameter: none is sent; nor n, nor seed
    assert body["max_tokens"] == 32 and not {"temperature", "top_p", "n", "seed"} & set(body)
    assert sorted(c.text for c in out) == ["Blue 1.", "Blue 2.", "Blue 3.", "Blue 4."]
    assert all(c.usage.prompt_tokens == 120 and c.usage.completion_tokens == 3 for c in out)
    assert all(c.finish_reason == "stop" for c in out)


async def test_temperature_only_when_asked_clamped():
    api = Api()
    await make(api, send_temperature=True).sample(MSGS, SamplingParams(temperature=1.5))
    assert api.bodies[0]["temperature"] == 1.0


async def test_structured_outputs_through_output_config():
    api = Api()
    out = await make(api, json_mode="output_config").sample(MSGS, SamplingParams(n=2, json_schema=Pick.model_json_schema()))
    fmt = api.bodies[0]["output_config"]["format"]
    assert fmt["type"] == "json_schema" and set(fmt["schema"]["properties"]) == {"colour", "confidence"}
    assert "minimum" not in fmt["schema"]["properties"]["confidence"]  # the SDK's transform moved it to the text
    assert all(Pick.model_validate_json(c.text) for c in out)


async def test_auto_json_falls_back_to_a_forced_tool_once_and_remembers():
    def script(body: dict[str, Any], k: int) -> httpx2.Response | None:
        if "output_config" in body:
            return error(400, "invalid_request_error", "output_config.format: not supported for this model")
        return None

    api = Api(script)
    b = make(api)
    first = await b.sample(MSGS, SamplingParams(json_schema=Pick.model_json_schema()))
    assert ["output_config" in x for x in api.bodies] == [True, False]  # the 400 was not retried
    tool_body = api.bodies[1]
    assert tool_body["tool_choice"] == {"type": "tool", "name": "output"}
    assert tool_body["tools"][0]["input_schema"] == Pick.model_json_schema()
    assert Pick.model_validate_json(first[0].text) and first[0].finish_reason == "stop"
    await b.sample(MSGS, SamplingParams(json_schema=Pick.model_json_schema()))
    assert len(api.bodies) == 3 and "tools" in api.bodies[2]


async def test_max_tokens_stop_is_length():
    api = Api(lambda body, k: httpx2.Response(200, json=message([{"type": "text", "text": '{"colour": "bl'}], "max_tokens")))
    (out,) = await make(api).sample(MSGS, SamplingParams(max_tokens=5))
    assert out.finish_reason == "length"


async def test_529_overloaded_is_retried_by_the_sdk():
    api = Api(lambda body, k: error(529, "overloaded_error", "Overloaded") if k == 1 else None)
    out = await make(api, max_retries=2).sample(MSGS, SamplingParams())
    assert len(api.bodies) == 2 and out[0].text.startswith("Blue")


async def test_529_exhausted_is_a_backend_error_naming_the_backend():
    api = Api(lambda body, k: error(529, "overloaded_error", "Overloaded", {"retry-after": "0.01"}))
    with pytest.raises(BackendError, match=rf"^anthropic:{MODEL}: overloaded \(529\)"):
        await make(api, max_retries=2).sample(MSGS, SamplingParams())
    assert len(api.bodies) == 3


async def test_429_retry_after_then_rate_limit_error_after_exactly_max_retries():
    api = Api(lambda body, k: error(429, "rate_limit_error", "Number of requests has exceeded your rate limit",
                                    {"retry-after": "0.05"}) if k <= 2 else None)
    out = await make(api, max_retries=2).sample(MSGS, SamplingParams())
    assert len(api.bodies) == 3 and out
    api = Api(lambda body, k: error(429, "rate_limit_error", "rate limited", {"retry-after": "0.01"}))
    with pytest.raises(RateLimitError, match=rf"^anthropic:{MODEL}: rate limited"):
        await make(api, max_retries=3).sample(MSGS, SamplingParams())
    assert len(api.bodies) == 4


@pytest.mark.parametrize(
    ("status", "etype", "exc"),
    [(400, "invalid_request_error", BackendError), (401, "authentication_error", AuthError),
     (404, "not_found_error", UnknownModelError)],
)
async def test_client_errors_are_not_retried(status, etype, exc):
    api = Api(lambda body, k: error(status, etype, "no"))
    with pytest.raises(exc, match=f"^anthropic:{MODEL}: "):
        await make(api, max_retries=3).sample(MSGS, SamplingParams())
    assert len(api.bodies) == 1


async def test_missing_key(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(AuthError, match="set ANTHROPIC_API_KEY"):
        await AnthropicBackend(MODEL).sample(MSGS, SamplingParams())


async def test_pipeline_with_anthropic_generator_and_judges():
    from bestofn.pipeline.select import aselect

    api = Api()
    b = make(api, json_mode="tool")  # the tool's input_schema keeps the score's range, so replies are in range
    sel = await aselect("Why is the sky blue?", n=3, model=b, judge_model=b, cache=False, max_tokens=64)
    assert len(api.bodies) == 3 + 4 * len({c.id for c in sel.candidates})
    assert all(v.status == "ok" for v in sel.verdicts) and sel.best is not None
    # claude-haiku-4-5 is in the price table: the Selection has a cost in dollars
    assert sel.cost.usd == pytest.approx((sel.cost.prompt_tokens * 1.0 + sel.cost.completion_tokens * 5.0) / 1e6)


@pytest.mark.network
@pytest.mark.skipif(not os.environ.get("ANTHROPIC_API_KEY"), reason="calls the real Anthropic API; needs ANTHROPIC_API_KEY")
async def test_real_anthropic_fan_out_and_json():
    b = AnthropicBackend(os.environ.get("BESTOFN_ANTHROPIC_TEST_MODEL", MODEL), max_retries=2)
    out = await b.sample(MSGS, SamplingParams(n=2, max_tokens=128, json_schema=Pick.model_json_schema()))
    assert len(out) == 2 and all(Pick.model_validate_json(c.text).colour for c in out)
    assert out[0].usage.prompt_tokens > 0
