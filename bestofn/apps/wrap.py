"""`bestofn.wrap(client)`: the chat call you already make, answered with the best of n.

    client = bestofn.wrap(OpenAI(), n=8, panel="default", judge_model="openai:gpt-4o-mini", log="pairs.jsonl")
    response = client.chat.completions.create(model="gpt-4o-mini", messages=[...])   # a ChatCompletion
    response.choices[0].message.content        # the best answer
    response.selection                          # the Selection: scores, ranking, pairs, cost

Works for `openai.OpenAI`, `openai.AsyncOpenAI`, `anthropic.Anthropic` and `anthropic.AsyncAnthropic`
(`client.messages.create(...)` returns an anthropic `Message`). The candidates are sampled through YOUR client
(its key, base_url, retries, proxies): an OpenAI client on api.openai.com gets `OpenAIBackend` (n in one
request), any other base_url `VLLMServerBackend` (an OpenAI-compatible server; it finds the server's flavour,
fanning out where the server ignores `n`); an Anthropic client gets `AnthropicBackend`. Everything else on the
client passes through untouched (`client.models.list()`, `client.chat.completions.parse(...)`, ...).

The request's model, messages (and Anthropic's `system`), max_tokens, temperature and seed become the
generation parameters; OpenAI's `n` keeps its meaning: the number of choices returned, from the top of the
ranking. `extra_body={"bestofn": {"n": 4, "panel": "...", "accept_threshold": 0.8}}` overrides the wrapper's
options for one call. A request with no seed uses the wrapper's (default 0, recorded in its pairs). `stream=True`
returns the SDK's own Stream (`openai.Stream[ChatCompletionChunk]`, `anthropic.Stream[RawMessageStreamEvent]`
or their async twins) over the selected answer, once it is chosen, with `.selection` attached.

Pairs go to `log` (a JSONL path, or any object with `write(pairs)`) from a background thread, off the
request's path; they are flushed by `client.flush()`, `client.close()` and at interpreter exit.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from bestofn.apps.options import BestOfN, BestOfNOptions
from bestofn.apps.serve.chat_wire import (
    anthropic_events,
    anthropic_message,
    anthropic_messages,
    chat_chunks,
    chat_completion,
    check_params,
    openai_messages,
    sse,
)
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache
from bestofn.config.panel import Panel
from bestofn.errors import ConfigError
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from bestofn.records import Message, Selection
from bestofn.sync import Portal

log = logging.getLogger("bestofn.wrap")
TRANSPORT_OPTIONS = ("extra_headers", "extra_query", "timeout")  # request options with no bearing on the text


# ------------------------------------------------------------------------------------------------ backends


def client_backend(client: Any, model: str, *, flavour: str | None = None) -> Backend:
    """The generator Backend for a user's own SDK client and a model name (also useful as a judge_model)."""
    module = type(client).__module__.split(".")[0]
    backend: Backend
    if module == "openai":
        host = getattr(getattr(client, "base_url", None), "host", "") or ""
        if host == "api.openai.com" and flavour is None:
            from bestofn.backends.openai import OpenAIBackend

            backend = OpenAIBackend(model, client=client)
        else:
            from bestofn.backends.vllm import VLLMServerBackend

            backend = VLLMServerBackend(model, client=client, flavour=flavour)
    elif module == "anthropic":
        from bestofn.backends.anthropic import AnthropicBackend

        backend = AnthropicBackend(model, client=client)
    else:
        raise ConfigError(f"bestofn.wrap: unsupported client {type(client).__name__}; wrap an openai.OpenAI, "
                          "openai.AsyncOpenAI, anthropic.Anthropic or anthropic.AsyncAnthropic")
    if getattr(backend, "base_url", None) is None:  # the call cache keys on the endpoint the client talks to
        backend.base_url = str(client.base_url)  # type: ignore[attr-defined]
    return backend


def _given(value: Any) -> bool:
    """False for None and the SDKs' NOT_GIVEN / omit sentinels."""
    return value is not None and type(value).__name__ not in ("NotGiven", "Omit")


def _split(kwargs: dict[str, Any], api: str) -> tuple[dict[str, Any], Any]:
    """The request's own parameters (sentinels and transport options dropped) and its `bestofn` object."""
    params = {k: v for k, v in kwargs.items() if _given(v) and k not in TRANSPORT_OPTIONS}
    extra = dict(params.pop("extra_body", None) or {})
    overrides = extra.pop("bestofn", params.pop("bestofn", None))
    check_params({**params, **extra}, api, hint="; call client.unwrapped for these")
    return params, overrides


# ------------------------------------------------------------------------------------------------ wrapper


class Wrapped:
    """A client whose chat call does best-of-n; every other attribute is the client's own."""

    def __init__(self, client: Any, bestofn: BestOfN, flavour: str | None, portal: Portal | None,
                 is_async: bool) -> None:
        self._client, self._bestofn, self._flavour = client, bestofn, flavour
        self._portal, self._async = portal, is_async
        self._backends: dict[str, Backend] = {}

    def __getattr__(self, name: str) -> Any:
        if name == "_client":  # not set yet (unpickling, copying): no recursion
            raise AttributeError(name)
        return getattr(self._client, name)

    def __repr__(self) -> str:
        options = self._bestofn.options
        return f"bestofn.wrap({self._client!r}, n={options.n}, panel={options.panel.name!r})"

    @property
    def unwrapped(self) -> Any:
        """The client itself (calls through it are plain, single-answer calls)."""
        return self._client

    def with_options(self, **options: Any) -> Wrapped:
        return type(self)(self._client.with_options(**options), self._bestofn, self._flavour, self._portal,
                          self._async)

    copy = with_options

    def flush(self) -> None:
        """Block until every pair produced so far is written to the log."""
        if self._bestofn.sink is not None:
            self._bestofn.sink.flush()

    def close(self) -> Any:
        """Flush the log and close the client (awaitable for async clients, like theirs)."""
        if self._async:
            return self._aclose()
        self.flush()
        if self._portal is not None:
            self._portal.close()
        return self._client.close()

    async def _aclose(self) -> None:
        await asyncio.to_thread(self.flush)
        await self._client.close()

    def __enter__(self) -> Wrapped:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    async def __aenter__(self) -> Wrapped:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    # -------------------------------------------------------------------------------- the selection
    def _backend(self, model: str) -> Backend:
        if model not in self._backends:
            self._backends[model] = client_backend(self._client, model, flavour=self._flavour)
        return self._backends[model]

    async def _select(self, messages: list[Message], model: Any, params: dict[str, Any], overrides: Any,
                      choices: int = 1) -> Selection:
        if not isinstance(model, str) or not model:
            raise ConfigError("model: the request needs a model name")
        options = self._bestofn.for_request(
            overrides, choices=choices, seed=params.get("seed"), temperature=params.get("temperature"),
            max_tokens=params.get("max_completion_tokens") or params.get("max_tokens"), where="extra_body['bestofn']",
        )
        selection = await self._bestofn.select(messages, self._backend(model), options)
        if selection.best is None:
            log.warning("bestofn: no candidate could be ranked (too few valid verdicts); answering with the first")
        return selection

    def _run(self, make: Any) -> Any:
        """Run `make()` (a coroutine) on the caller's loop (async clients) or on the portal (sync clients)."""
        if self._async:
            return make()
        assert self._portal is not None
        return self._portal.run(make())


class _Passthrough:
    def __init__(self, inner: Any, owner: Wrapped) -> None:
        self._inner, self._owner = inner, owner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


# ------------------------------------------------------------------------------------------------ OpenAI


class _Completions(_Passthrough):
    def create(self, **kwargs: Any) -> Any:
        """Best-of-n `chat.completions.create`: a ChatCompletion (or a Stream of chunks) with `.selection`."""
        owner = self._owner

        async def make() -> Any:  # errors surface where the SDK's own would: on the call, or on await
            params, overrides = _split(kwargs, "openai")
            messages = openai_messages(params.get("messages"))
            choices = int(params.get("n") or 1)
            stream = bool(params.get("stream"))
            include_usage = bool((params.get("stream_options") or {}).get("include_usage"))
            selection = await owner._select(messages, params.get("model"), params, overrides, choices)
            return _openai_result(owner._client, selection, params["model"], choices, stream, include_usage, owner._async)

        return owner._run(make)


class _Chat(_Passthrough):
    @property
    def completions(self) -> _Completions:
        return _Completions(self._inner.completions, self._owner)


class OpenAIWrapped(Wrapped):
    @property
    def chat(self) -> _Chat:
        return _Chat(self._client.chat, self)


def _fake_response(client: Any, path: str, body: bytes) -> Any:
    import httpx2

    request = httpx2.Request("POST", f"{str(client.base_url).rstrip('/')}/{path}")
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body, request=request)


def _openai_result(client: Any, selection: Selection, model: str, choices: int, stream: bool,
                   include_usage: bool, is_async: bool) -> Any:
    import openai
    from openai.types.chat import ChatCompletion, ChatCompletionChunk

    if not stream:
        out = ChatCompletion.model_validate(chat_completion(selection, model, choices))
    else:
        body = b"".join(sse(c) for c in chat_chunks(selection, model, choices, include_usage=include_usage))
        response = _fake_response(client, "chat/completions", body + sse("[DONE]"))
        cls = openai.AsyncStream if is_async else openai.Stream
        out = cls(cast_to=ChatCompletionChunk, response=response, client=client)
    object.__setattr__(out, "selection", selection)  # an attribute, not a field: dumps stay the provider's
    return out


# ------------------------------------------------------------------------------------------------ Anthropic


class _Messages(_Passthrough):
    def create(self, **kwargs: Any) -> Any:
        """Best-of-n `messages.create`: an anthropic Message (or a Stream of events) with `.selection`."""
        owner = self._owner

        async def make() -> Any:
            params, overrides = _split(kwargs, "anthropic")
            messages = anthropic_messages(params.get("system"), params.get("messages"))
            stream = bool(params.get("stream"))
            selection = await owner._select(messages, params.get("model"), params, overrides)
            return _anthropic_result(owner._client, selection, params["model"], stream, owner._async)

        return owner._run(make)


class AnthropicWrapped(Wrapped):
    @property
    def messages(self) -> _Messages:
        return _Messages(self._client.messages, self)


def _anthropic_result(client: Any, selection: Selection, model: str, stream: bool, is_async: bool) -> Any:
    import anthropic
    from anthropic.types import Message as AnthropicMessage, RawMessageStreamEvent

    if not stream:
        out = AnthropicMessage.model_validate(anthropic_message(selection, model))
    else:
        body = b"".join(sse(e, event=e["type"]) for e in anthropic_events(selection, model))
        response = _fake_response(client, "v1/messages", body)
        cls = anthropic.AsyncStream if is_async else anthropic.Stream
        out = cls(cast_to=RawMessageStreamEvent, response=response, client=client)
    object.__setattr__(out, "selection", selection)
    return out


# ------------------------------------------------------------------------------------------------ wrap()


def wrap(
    client: Any,
    *,
    n: int = 8,
    panel: str | Path | Panel = "default",
    judge_model: str | Backend | None = None,
    base_url: str | None = None,
    seed: int = 0,
    temperature: float = DEFAULT_TEMPERATURE,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    judge_max_tokens: int | None = None,
    accept_threshold: float | None = None,
    wave_size: int | None = None,
    strategy: str = "best-worst",
    pair_margin: float | None = None,
    log: str | Path | Any = None,
    cache: Cache | str | Path | bool | None = None,
    flavour: str | None = None,
) -> Any:
    """Wrap an OpenAI or Anthropic client (sync or async) so its chat call returns the best of n answers.

    `n` candidates per call; `panel`, `judge_model` (a spec, or a Backend such as `client_backend(client,
    "gpt-4o-mini")`), `base_url` (for `vllm:` judge specs), `max_tokens`/`temperature` (used when the request
    gives none), `seed` (for a request without one; default 0), `accept_threshold`/`wave_size` (early
    stop), `strategy` and `pair_margin` (pairs), `log` (a JSONL path or a sink with `write(pairs)`), `cache`, `flavour` (the
    server flavour for an OpenAI client on a non-OpenAI base_url: vllm, llama-cpp, llama-server, openai).
    The options are checked here (bestofn.apps.options.BestOfNOptions): a bad one is a ConfigError naming it."""
    if isinstance(client, Wrapped):
        raise ConfigError("this client is wrapped already")
    kind = _client_kind(client)
    if kind is None:
        raise ConfigError(f"bestofn.wrap: unsupported client {type(client).__name__}; wrap an openai.OpenAI, "
                          "openai.AsyncOpenAI, anthropic.Anthropic or anthropic.AsyncAnthropic")
    options = BestOfNOptions(
        n=n, panel=panel, judge_model=judge_model, base_url=base_url, seed=seed, temperature=temperature,
        max_tokens=max_tokens, judge_max_tokens=judge_max_tokens, accept_threshold=accept_threshold,
        wave_size=wave_size, strategy=strategy, pair_margin=pair_margin, cache=cache, log=log,
    )
    cls, is_async = kind
    return cls(client, BestOfN(options, any_panel=True), flavour, None if is_async else Portal(), is_async)


def _client_kind(client: Any) -> tuple[type[Wrapped], bool] | None:
    module = type(client).__module__.split(".")[0]
    if module == "openai":
        import openai

        if isinstance(client, (openai.OpenAI, openai.AsyncOpenAI)):
            return OpenAIWrapped, isinstance(client, openai.AsyncOpenAI)
    if module == "anthropic":
        import anthropic

        if isinstance(client, (anthropic.Anthropic, anthropic.AsyncAnthropic)):
            return AnthropicWrapped, isinstance(client, anthropic.AsyncAnthropic)
    return None


__all__ = ["BestOfNOptions", "Wrapped", "client_backend", "wrap"]
