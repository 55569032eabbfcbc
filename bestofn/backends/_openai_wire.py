"""What `openai:` and `vllm:` share: the Chat Completions wire format through the official `openai` SDK.

`OpenAIChat` holds the client (ours, or one the caller passes in: `AsyncOpenAI`, or a sync `OpenAI`, whose
calls then run in a worker thread), the limits, and the translation both ways: our messages and
SamplingParams into a request, a ChatCompletion into Completions, and the SDK's exceptions into
bestofn's typed errors, each naming the backend. The SDK's own retries (`max_retries`, retry-after
honoured) are the one retry loop.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import time
from functools import lru_cache
from typing import Any

from bestofn.backends.base import Completion, SamplingParams, TokenLogprob
from bestofn.backends.sdk_errors import typed_error as sdk_typed_error
from bestofn.backends.limits import Limits, PerLoop
from bestofn.backends.retry_after import capped_http_client
from bestofn.errors import AuthError, BackendError, MissingExtraError
from bestofn.records import Message, Usage


_LONE_SURROGATE = re.compile("[\\ud800-\\udfff]")


def import_openai(what: str) -> Any:
    try:
        import openai
    except ModuleNotFoundError as exc:
        raise MissingExtraError(what, "openai", "openai") from exc
    return openai


def make_client(
    backend: str, *, base_url: str | None, api_key: str | None, max_retries: int, timeout: float,
    key_env: str = "OPENAI_API_KEY",
) -> Any:
    openai = import_openai(f"the {backend.split(':')[0]} backend")
    api_key = api_key or os.environ.get(key_env)
    if not api_key:
        raise AuthError(backend, f"no API key: set {key_env} or pass api_key=")
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout,
                              http_client=capped_http_client(openai))


def strict_schema(schema: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Return (schema, strict): strict when every object already requires all its properties (then
    `additionalProperties: false` is added where missing), as OpenAI's strict mode demands."""
    strict = True

    def walk(node: Any) -> Any:
        nonlocal strict
        if isinstance(node, list):
            return [walk(x) for x in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out:
            if set(out.get("required", [])) != set(out["properties"]):
                strict = False
            if out.get("additionalProperties") not in (None, False):
                strict = False
            out.setdefault("additionalProperties", False)
        return out

    converted = walk(schema)
    return (converted, True) if strict else (schema, False)


def schema_name(schema: dict[str, Any]) -> str:
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or "output"))[:64]
    return name or "output"


@lru_cache(maxsize=256)
def _json_schema_format(blob: str) -> dict[str, Any]:
    schema = json.loads(blob)
    converted, strict = strict_schema(schema)
    return {"type": "json_schema", "json_schema": {"name": schema_name(schema), "schema": converted, "strict": strict}}


def json_schema_format(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAI's response_format for a schema (strict where it can be). Judges send the same few schemas on
    every call, so the conversion is remembered by content; the result is shared: do not mutate it."""
    return _json_schema_format(json.dumps(schema))  # key order kept: properties are generated in order


def json_object_format(schema: dict[str, Any]) -> dict[str, Any]:
    """llama-cpp-python's server: JSON mode with a schema it compiles to a grammar."""
    return {"type": "json_object", "schema": schema}


def request_body(model: str, messages: list[Message], params: SamplingParams, *, n: int, seed: int | None,
                 response_format: dict[str, Any] | None) -> dict[str, Any]:
    """A Chat Completions request's JSON body, as `chat.completions.create` would send it for these arguments
    (OpenAIChat.create posts it as is: see there)."""
    body: dict[str, Any] = {
        "model": model,
        "messages": [m.model_dump() for m in messages],
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": seed,
    }
    if n != 1:
        body["n"] = n
    if response_format is not None:
        body["response_format"] = response_format
    if params.top_logprobs is not None:
        body["logprobs"] = True
        body["top_logprobs"] = params.top_logprobs
    return body


def _logprobs(choice: Any) -> list[TokenLogprob] | None:
    content = getattr(getattr(choice, "logprobs", None), "content", None)
    if not content:
        return None
    return [
        TokenLogprob(token=t.token, logprob=t.logprob, top={x.token: x.logprob for x in (t.top_logprobs or [])})
        for t in content
    ]


def completions_from(response: Any, latency_s: float) -> list[Completion]:
    """One Completion per choice, in index order. The response's usage covers all choices: the prompt is
    counted once (on the first), completion tokens are split by each choice's own token count where logprobs
    give it, else in proportion to text length, so that the per-completion figures add up to the response's."""
    choices = sorted(response.choices, key=lambda c: c.index)
    usage = getattr(response, "usage", None)
    prompt_tokens = getattr(usage, "prompt_tokens", 0) or 0
    total = getattr(usage, "completion_tokens", 0) or 0
    texts = [c.message.content or "" for c in choices]
    logprobs = [_logprobs(c) for c in choices]
    if all(lp is not None for lp in logprobs) and sum(len(lp or []) for lp in logprobs) == total:
        shares = [len(lp or []) for lp in logprobs]
    else:
        weights = [max(1, len(t)) for t in texts]
        shares = [total * w // sum(weights) for w in weights]
        if shares:
            shares[-1] += total - sum(shares)
    return [
        Completion(
            text=text,
            finish_reason=choice.finish_reason,
            usage=Usage(prompt_tokens=prompt_tokens if i == 0 else 0, completion_tokens=share),
            latency_s=latency_s,
            logprobs=lp,
        )
        for i, (choice, text, lp, share) in enumerate(zip(choices, texts, logprobs, shares))
    ]


def typed_error(exc: Exception, backend: str, model: str) -> Exception:
    import openai

    return sdk_typed_error(openai, exc, backend, model)


class OpenAIChat:
    """A Chat Completions caller: one client, one `Limits`, typed errors.

    `client` is the caller's own client (used as is, on whatever loop it is awaited on), or a zero-argument
    factory: then one AsyncOpenAI is made per event loop, because an async HTTP pool belongs to the loop it
    was opened on and the sync API (`select`) runs one loop per call while backends live per process."""

    def __init__(self, backend: str, model: str, client: Any, limits: Limits) -> None:
        openai = import_openai(f"the {backend.split(':')[0]} backend")
        self.backend, self.model, self.limits = backend, model, limits
        if isinstance(client, (openai.AsyncOpenAI, openai.OpenAI)):
            self._own: PerLoop | None = None
            self._client: Any = client
        elif callable(client):
            self._own = PerLoop(client, lambda c: c.close())
        else:
            raise TypeError(f"{backend}: client must be an openai.AsyncOpenAI or openai.OpenAI, got {type(client).__name__}")

    async def client(self) -> Any:
        return self._client if self._own is None else await self._own.get()

    async def create(self, body: dict[str, Any], *, max_retries: int | None = None) -> list[Completion]:
        """POST `body` (request_body) to /chat/completions with the SDK's own request path, the one
        `chat.completions.create` ends in (its auth, retries, errors and typed ChatCompletion), without that
        method's typed transform of the params: it walks every message through every member of the SDK's
        message-param union, 0.33 ms of the ~1.5 ms of CPU the SDK takes for a whole judge call on a 2-core
        machine, while the body is plain JSON already (bench/bench_build.py: the build's client is CPU-bound;
        tests/test_backend_openai.py checks that the requests are the same)."""
        import openai
        from openai.types.chat import ChatCompletion

        client = await self.client()
        is_async = isinstance(client, openai.AsyncOpenAI)
        if max_retries is not None:
            client = client.with_options(max_retries=max_retries)
        post = functools.partial(client.post, "/chat/completions", body=body, cast_to=ChatCompletion,
                                 options={"security": {"bearer_auth": True}})  # create's own auth: the API key
        # Let the other calls that became ready with this one (a candidate's judges, a round's matches) build their
        # requests first, so that the SDK sends them back to back: measured ~5% less wall time for a best-of-16
        # (bench/bench_backends.py) than interleaving prompt rendering with the SDK's sends.
        await asyncio.sleep(0)
        async with self.limits:
            started = time.perf_counter()
            try:
                response = await post() if is_async else await asyncio.to_thread(post)
            except openai.OpenAIError as exc:
                raise typed_error(exc, self.backend, self.model) from exc
            except ValueError as exc:  # a body cut short or not JSON (json/pydantic errors), or text no codec takes
                what = "text that is not valid Unicode" if isinstance(exc, UnicodeError) else \
                    "the server's reply is not valid JSON (truncated?)"
                raise BackendError(self.backend, f"{what}: {exc}") from exc
            latency = time.perf_counter() - started
        if not getattr(response, "choices", None):
            got = response[:80] if isinstance(response, str) else type(response).__name__
            raise BackendError(self.backend, f"the server's reply is not a chat completion (no choices): {got!r}")
        for choice in response.choices:  # JSON may carry half a surrogate pair: not text, and no sink could store it
            if bad := _LONE_SURROGATE.search(choice.message.content or ""):
                raise BackendError(self.backend, f"the reply holds a lone surrogate U+{ord(bad.group()):04X}: "
                                                 "not valid Unicode text")
        return completions_from(response, latency)

    async def list_models(self) -> list[Any]:
        import openai

        client = (await self.client()).with_options(max_retries=1)
        async with self.limits:
            try:
                if isinstance(client, openai.AsyncOpenAI):
                    page = await client.models.list()
                else:
                    page = await asyncio.to_thread(client.models.list)
            except openai.OpenAIError as exc:
                raise typed_error(exc, self.backend, self.model) from exc
        return list(getattr(page, "data", []) or [])

    async def aclose(self) -> None:
        if self._own is not None:
            await self._own.aclose()
