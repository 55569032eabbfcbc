"""`vllm:MODEL`: any OpenAI-compatible server at a base URL (vLLM, llama.cpp's servers, SGLang, ...).

The base URL comes from `--base-url`, `base_url=` or `BESTOFN_BASE_URL`; a key (if the server wants one)
from `api_key=` or `BESTOFN_API_KEY`. Servers differ, so the backend knows their flavours:

| flavour       | found by (GET /v1/models owned_by) | n                  | JSON output                          |
|---------------|------------------------------------|--------------------|--------------------------------------|
| `vllm`        | `vllm`                             | one request        | response_format json_schema          |
| `llama-cpp`   | `me` (llama-cpp-python's server)   | fan out, seed + i  | response_format json_object + schema |
| `llama-server`| `llamacpp` (llama.cpp's C++ server)| fan out, seed + i  | response_format json_schema          |
| `openai`      | anything else (SGLang, ...)        | one request, fan out the rest if fewer come back, sticky | json_schema, else json_object + schema, sticky |

`flavour="auto"` (default; or `BESTOFN_SERVER_FLAVOUR`) asks /v1/models once; naming the flavour skips that.
When that probe fails (an error status, a closed connection), the backend assumes `openai` and warns, naming
the URL and the flavour: a llama-cpp-python server would otherwise get parallel requests without a word.
llama-cpp-python's server answers one request at a time, so that flavour is `serial` (the pipeline then orders
judge calls for its KV cache) and sends one request at a time, so they arrive in that order (our per-request
overhead is milliseconds against the server's seconds).
vLLM also accepts `structured_outputs={"json": ...}` (>= 0.10.2); response_format json_schema is used because
every vLLM version with an OpenAI server takes it, while older ones silently ignore unknown fields.
"""

from __future__ import annotations

import asyncio
import os
import warnings
from collections.abc import AsyncIterator
from functools import partial
from typing import Any, Unpack

from bestofn.backends._openai_wire import (
    OpenAIChat,
    import_openai,
    json_object_format,
    json_schema_format,
    request_body,
)
from bestofn.backends.base import Completion, SamplingParams
from bestofn.backends.limits import Limits, RemoteBackend, RemoteSettings, collect, fan_out
from bestofn.backends.retry_after import capped_http_client
from bestofn.errors import BackendError, ConfigError
from bestofn.records import Message

FLAVOURS = ("auto", "vllm", "llama-cpp", "llama-server", "openai")
OWNED_BY = {"vllm": "vllm", "me": "llama-cpp", "llamacpp": "llama-server", "llama.cpp": "llama-server"}
#: (native n?, JSON mode) per flavour; None = not known yet, found out from the first replies
TRAITS: dict[str, tuple[bool | None, str | None]] = {
    "vllm": (True, "json_schema"),
    "llama-cpp": (False, "json_object"),
    "llama-server": (False, "json_schema"),
    "openai": (None, None),
}
FALLBACK_STATUSES = {400, 404, 415, 422, 500, 501}


def _make_client(base_url: str, api_key: str, max_retries: int, timeout: float) -> Any:
    openai = import_openai("the vllm backend")
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout,
                              http_client=capped_http_client(openai))


def _status(exc: BaseException) -> int | None:
    return getattr(exc.__cause__, "status_code", None)


class VLLMServerBackend(RemoteBackend):
    prefix = "vllm"

    def __init__(self, model: str = "", *, client: Any = None, api_key: str | None = None,
                 flavour: str | None = None, **settings: Unpack[RemoteSettings]) -> None:
        super().__init__(model, **settings)
        self.flavour = flavour or os.environ.get("BESTOFN_SERVER_FLAVOUR") or "auto"
        if self.flavour not in FLAVOURS:
            raise ConfigError(f"{self.spec}: unknown server flavour {self.flavour!r}; one of {', '.join(FLAVOURS)}")
        if client is None:
            self.base_url = self.base_url or os.environ.get("BESTOFN_BASE_URL")
            if not self.base_url:
                raise ConfigError(f"{self.spec} needs the server's URL: --base-url, base_url= or BESTOFN_BASE_URL")
            key = api_key or os.environ.get("BESTOFN_API_KEY") or "EMPTY"
            client = partial(_make_client, self.base_url.rstrip("/"), key, self.max_retries, self.timeout)
        self._concurrency = settings.get("concurrency")  # as asked: a llama-cpp-python server gets 1 unless set
        self.chat = OpenAIChat(self.spec, model, client, self.limits)
        self._native_n: bool | None = None
        self._json: str | None = None
        self._resolved: str | None = None
        self._lock: tuple[Any, asyncio.Lock] | None = None
        if self.flavour != "auto":
            self._apply(self.flavour)

    # ----------------------------------------------------------------------------------- flavour
    @property
    def serial(self) -> bool:  # type: ignore[override]
        return self._resolved == "llama-cpp"

    def _apply(self, flavour: str) -> None:
        self._resolved = flavour
        self._native_n, self._json = TRAITS[flavour]
        if flavour == "llama-cpp" and self._concurrency is None:
            self.limits = self.chat.limits = Limits(1, self.limits.rpm)

    async def resolve(self) -> str:
        """The server's flavour (asks GET /v1/models once when `auto`); also fills in a missing model name."""
        if self._resolved is not None and self.model:
            return self._resolved
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        async with self._lock[1]:
            if self._resolved is not None and self.model:
                return self._resolved
            try:
                models, failed = await self.chat.list_models(), None
            except BackendError as exc:
                if not self.model:
                    raise
                models, failed = [], exc
            if not self.model:
                if not models:
                    raise ConfigError(f"{self.spec}: the server lists no models; name one: vllm:MODEL")
                self.model = self.chat.model = models[0].id
            if self._resolved is None:
                owners = {str(getattr(m, "owned_by", "")).lower() for m in models}
                self._apply(next((OWNED_BY[o] for o in owners if o in OWNED_BY), "openai"))
                if failed is not None:  # say so: a llama-cpp-python server would now get parallel requests
                    url = f"{str((await self.chat.client()).base_url).rstrip('/')}/models"
                    warnings.warn(
                        f"{self.spec}: GET {url} failed ({failed}), so the server is unknown: assuming the generic "
                        f"{self._resolved!r} flavour, requests in parallel (a llama-cpp-python server needs them one "
                        f"at a time). Name the flavour to skip the probe: BESTOFN_SERVER_FLAVOUR="
                        f"{'|'.join(FLAVOURS[1:])}", stacklevel=2)
        assert self._resolved is not None
        return self._resolved

    # ----------------------------------------------------------------------------------- sampling
    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        if params.n == 1:  # a judge's call: one request, no stream to collect (`sample_stream`'s n=1 path)
            await self.resolve()
            return (await self._request(messages, params, n=1, seed=params.seed))[:1]
        return await collect(self.sample_stream(messages, params), params.n)

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        """Yield (sample index, completion) as each one arrives: all at once where the server takes `n`."""
        await self.resolve()
        got: list[Completion] = []
        if params.n == 1 or self._native_n is not False:
            try:
                got = await self._request(messages, params, n=params.n, seed=params.seed)
            except BackendError as exc:
                if not (self._native_n is None and params.n > 1 and _status(exc) in (400, 422)):
                    raise
                self._native_n = False  # the server refuses n > 1: fan out from now on
            got = got[: params.n]
            if params.n > 1 and self._native_n is None:
                self._native_n = len(got) == params.n
            for i, completion in enumerate(got):
                yield i, completion
        start = len(got)
        if start < params.n:
            async for i, completion in fan_out(
                lambda i: self._one(messages, params, start + i), params.n - start
            ):
                yield start + i, completion

    async def _one(self, messages: list[Message], params: SamplingParams, index: int) -> Completion:
        (completion, *_) = await self._request(messages, params, n=1, seed=params.seed + index)
        return completion

    async def _request(self, messages: list[Message], params: SamplingParams, *, n: int, seed: int) -> list[Completion]:
        schema = params.json_schema
        if schema is None:
            return await self.chat.create(request_body(self.model, messages, params, n=n, seed=seed, response_format=None))
        if self._json is not None:
            fmt = json_schema_format(schema) if self._json == "json_schema" else json_object_format(schema)
            return await self.chat.create(request_body(self.model, messages, params, n=n, seed=seed, response_format=fmt))
        # Not known yet: try the standard json_schema once without retries; a server that rejects it gets
        # JSON mode with a schema; if that fails too, json_schema again with the full retry budget.
        standard = request_body(self.model, messages, params, n=n, seed=seed, response_format=json_schema_format(schema))
        try:
            out = await self.chat.create(standard, max_retries=0)
            self._json = "json_schema"
            return out
        except BackendError as exc:
            if _status(exc) not in FALLBACK_STATUSES:
                raise
        fallback = request_body(self.model, messages, params, n=n, seed=seed, response_format=json_object_format(schema))
        try:
            out = await self.chat.create(fallback)
            self._json = "json_object"
            return out
        except BackendError:
            out = await self.chat.create(standard)
            self._json = "json_schema"
            return out

    async def aclose(self) -> None:
        await self.chat.aclose()
