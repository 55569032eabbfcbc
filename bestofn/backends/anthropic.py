"""`anthropic:MODEL`: the Anthropic Messages API through the official SDK (`pip install 'bestofn[anthropic]'`).

There is no `n`: the n samples are n concurrent requests (yielded as each one arrives). System turns go to
the top-level `system` (marked for prompt caching, so that a judge's n calls share the rubric's prefix).
There is no seed, and no temperature: SDK 2.x sends API version 2026-10-21, which answers 400 to any sampling
parameter (the SDK dropped them from its signature); `send_temperature=True` passes ours, clamped to [0, 1],
through `extra_body` for a client pinned to an older `anthropic-version`. JSON output:

- `json_mode="output_config"`: structured outputs, `output_config={"format": {"type": "json_schema",
  "schema": transform_schema(schema)}}` (the SDK's own transform: keywords the API does not take, such as
  integer minimum/maximum, move into descriptions; we validate ranges on our side anyway);
- `json_mode="tool"`: a forced tool call, `tools=[{"name": "output", "input_schema": schema}]`,
  `tool_choice={"type": "tool", "name": "output"}`; the tool's input is the JSON;
- `json_mode="auto"` (default): structured outputs, and the forced tool from then on if the model answers
  400 to them (older models).

    AnthropicBackend("claude-haiku-4-5")                                 # key from ANTHROPIC_API_KEY
    AnthropicBackend("claude-haiku-4-5", client=AsyncAnthropic(...))     # your own client (sync works too)
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import AsyncIterator
from typing import Any, Unpack

from bestofn.backends.base import Completion, SamplingParams
from bestofn.backends.sdk_errors import typed_error as sdk_typed_error
from bestofn.backends.limits import PerLoop, RemoteBackend, RemoteSettings, collect, fan_out
from bestofn.backends.retry_after import capped_http_client
from bestofn.errors import AuthError, BackendError, ConfigError, MissingExtraError
from bestofn.records import Message, Usage

TOOL_NAME = "output"
FINISH = {"end_turn": "stop", "stop_sequence": "stop", "tool_use": "stop", "max_tokens": "length",
          "refusal": "refusal", "pause_turn": "length"}
JSON_MODES = ("auto", "output_config", "tool")


def _sdk() -> Any:
    try:
        import anthropic
    except ModuleNotFoundError as exc:
        raise MissingExtraError("the anthropic backend", "anthropic", "anthropic") from exc
    return anthropic


def to_request(messages: list[Message], *, cache_system: bool = True) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]]]:
    """(system blocks or None, messages): system turns leave the conversation for the top-level field."""
    system = "\n\n".join(m.content for m in messages if m.role == "system")
    turns = [{"role": m.role, "content": m.content} for m in messages if m.role != "system"]
    if not system:
        return None, turns
    block: dict[str, Any] = {"type": "text", "text": system}
    if cache_system:
        block["cache_control"] = {"type": "ephemeral"}
    return [block], turns


def from_message(message: Any, latency_s: float) -> Completion:
    """A Completion from a Message: the forced tool's input (as JSON) or the text blocks joined."""
    tool = next((b for b in message.content if b.type == "tool_use" and b.name == TOOL_NAME), None)
    if tool is not None:
        text = json.dumps(tool.input, ensure_ascii=False)
    else:
        text = "".join(b.text for b in message.content if b.type == "text")
    u = message.usage
    prompt = (u.input_tokens or 0) + (u.cache_read_input_tokens or 0) + (u.cache_creation_input_tokens or 0)
    return Completion(
        text=text,
        finish_reason=FINISH.get(message.stop_reason or "", message.stop_reason),
        usage=Usage(prompt_tokens=prompt, completion_tokens=u.output_tokens or 0),
        latency_s=latency_s,
    )


def typed_error(exc: Exception, backend: str, model: str) -> Exception:
    return sdk_typed_error(_sdk(), exc, backend, model)


class AnthropicBackend(RemoteBackend):
    prefix = "anthropic"

    def __init__(
        self,
        model: str,
        *,
        client: Any = None,
        api_key: str | None = None,
        json_mode: str = "auto",
        cache_system: bool = True,
        send_temperature: bool = False,
        **settings: Unpack[RemoteSettings],
    ) -> None:
        if not model:
            raise ConfigError("the anthropic backend needs a model name: anthropic:MODEL, e.g. anthropic:claude-haiku-4-5")
        if json_mode not in JSON_MODES:
            raise ConfigError(f"anthropic:{model}: json_mode must be one of {', '.join(JSON_MODES)}, got {json_mode!r}")
        anthropic = _sdk()
        super().__init__(model, **settings)
        self.json_mode, self.cache_system, self.send_temperature = json_mode, cache_system, send_temperature
        if isinstance(client, (anthropic.AsyncAnthropic, anthropic.Anthropic)):
            self._client, self._own = client, None
        elif client is None:

            def make() -> Any:
                key = api_key or os.environ.get("ANTHROPIC_API_KEY")
                if not key:
                    raise AuthError(self.spec, "no API key: set ANTHROPIC_API_KEY or pass api_key=")
                return anthropic.AsyncAnthropic(api_key=key, base_url=self.base_url, max_retries=self.max_retries,
                                                timeout=self.timeout, http_client=capped_http_client(anthropic))

            self._client, self._own = None, PerLoop(make, lambda c: c.close())
        else:
            raise TypeError(f"{self.spec}: client must be an anthropic.AsyncAnthropic or Anthropic, got {type(client).__name__}")

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        return await collect(self.sample_stream(messages, params), params.n)

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        if params.top_logprobs is not None:
            raise BackendError(self.spec, "the Messages API returns no logprobs")
        async for index, completion in fan_out(lambda i: self._one(messages, params), params.n):
            yield index, completion

    def request(self, messages: list[Message], params: SamplingParams, mode: str | None = None) -> dict[str, Any]:
        """The keyword arguments of `messages.create` for one sample."""
        system, turns = to_request(messages, cache_system=self.cache_system)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "messages": turns,
        }
        if self.send_temperature:
            kwargs["extra_body"] = {"temperature": min(params.temperature, 1.0)}
        if system is not None:
            kwargs["system"] = system
        schema = params.json_schema
        mode = mode or ("output_config" if self.json_mode == "auto" else self.json_mode)
        if schema is not None and mode == "output_config":
            kwargs["output_config"] = {"format": {"type": "json_schema", "schema": _sdk().transform_schema(schema)}}
        elif schema is not None:
            kwargs["tools"] = [{"name": TOOL_NAME, "description": "Give your answer as this JSON object.",
                                "input_schema": schema}]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL_NAME}
        return kwargs

    async def _one(self, messages: list[Message], params: SamplingParams) -> Completion:
        try:
            return await self._call(self.request(messages, params))
        except BackendError as exc:
            anthropic = _sdk()
            rejected = isinstance(exc.__cause__, anthropic.BadRequestError)
            if not (params.json_schema is not None and self.json_mode == "auto" and rejected):
                raise
            self.json_mode = "tool"  # this model takes no structured outputs: a forced tool from now on
            return await self._call(self.request(messages, params))

    async def _call(self, kwargs: dict[str, Any]) -> Completion:
        anthropic = _sdk()
        client = self._client if self._own is None else await self._own.get()
        async with self.limits:
            started = time.perf_counter()
            try:
                if isinstance(client, anthropic.AsyncAnthropic):
                    message = await client.messages.create(**kwargs)
                else:
                    message = await asyncio.to_thread(client.messages.create, **kwargs)
            except anthropic.AnthropicError as exc:
                raise typed_error(exc, self.spec, self.model) from exc
            except ValueError as exc:  # a body cut short or not JSON, or text no codec takes
                raise BackendError(self.spec, f"the server's reply is not valid JSON (truncated?): {exc}") from exc
            if isinstance(message, str):  # the SDK hands back the text of a body that is not JSON
                raise BackendError(self.spec, f"the server's reply is not a Messages API message: {message[:80]!r}")
            return from_message(message, time.perf_counter() - started)

    async def aclose(self) -> None:
        if self._own is not None:
            await self._own.aclose()
