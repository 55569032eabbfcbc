"""What every remote backend shares: its settings, a concurrency limit, a requests-per-minute limit, fan-out.

Retries are NOT here: the SDKs retry (with their retry-after handling), and that is the one retry loop.

- `RemoteBackend`: the base of `openai:`, `vllm:` and `anthropic:`: the model, the settings they all take
  (`RemoteSettings`: base_url, concurrency, rpm, max_retries, timeout, price) with their defaults, and the Limits.

- `Limits(concurrency=64, rpm=None)`: an `asyncio.Semaphore` for calls in flight and an `aiolimiter`
  leaky bucket for requests per minute. Defaults come from `BESTOFN_CONCURRENCY` and `BESTOFN_RPM`.
- `PerLoop(make, close)`: one client per event loop, closed when `asyncio.run` shuts its loop down (a client's
  HTTP pool belongs to the loop it was opened on; the sync API runs one loop per call, backends live on).
- `fan_out(one, n)`: run `one(i)` for i in 0..n-1 concurrently and yield `(i, completion)` as each one
  finishes (so that a caller can judge a candidate as soon as it exists); the first failure cancels the rest.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, ClassVar, TypedDict

from bestofn.backends.base import Backend, Completion
from bestofn.backends.pricing import Price
from bestofn.errors import ConfigError

DEFAULT_CONCURRENCY = 64
DEFAULT_TIMEOUT = 120.0  # seconds per request, the SDK's timeout
DEFAULT_MAX_RETRIES = 3  # the SDK's retries (retry-after honoured)


def env_int(name: str, default: int | None) -> int | None:
    """A positive integer from the environment variable `name` (unset or blank: `default`), or a ConfigError."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from None
    if value < 1:
        raise ConfigError(f"{name} must be at least 1, got {value}")
    return value


class Limits:
    """`async with limits:` around one request: waits for a free slot, then for the rate limiter."""

    def __init__(self, concurrency: int | None = None, rpm: int | None = None) -> None:
        self.concurrency = concurrency or env_int("BESTOFN_CONCURRENCY", DEFAULT_CONCURRENCY) or DEFAULT_CONCURRENCY
        self.rpm = rpm if rpm is not None else env_int("BESTOFN_RPM", None)
        if self.concurrency < 1 or (self.rpm is not None and self.rpm < 1):
            raise ConfigError(f"concurrency and rpm must be at least 1, got {self.concurrency} and {self.rpm}")
        # Created lazily: a Semaphore/AsyncLimiter binds to the loop it is first used on, and a backend
        # instance outlives `asyncio.run` calls (the sync API runs one loop per call).
        self._loop: Any = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: Any = None

    def _bind(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loop = loop
        self._semaphore = asyncio.Semaphore(self.concurrency)
        if self.rpm is not None:
            from aiolimiter import AsyncLimiter

            # max_rate per 60 s; a burst of at most max(1, rpm/60) so that requests spread over the minute
            self._limiter = AsyncLimiter(max(1, self.rpm // 60), 60 / self.rpm * max(1, self.rpm // 60))

    async def __aenter__(self) -> Limits:
        self._bind()
        assert self._semaphore is not None
        await self._semaphore.acquire()
        if self._limiter is not None:
            try:
                await self._limiter.acquire()
            except BaseException:
                self._semaphore.release()
                raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        assert self._semaphore is not None
        self._semaphore.release()


class RemoteSettings(TypedDict, total=False):
    """The keyword arguments every remote backend takes (the types of `**settings`; see RemoteBackend)."""

    base_url: str | None
    concurrency: int | None
    rpm: int | None
    max_retries: int
    timeout: float
    price: Price | None


class RemoteBackend(Backend):
    """The base of the backends that call an API (`openai:`, `vllm:`, `anthropic:`). A subclass takes its own
    options (its client, key, JSON mode...) and passes the shared settings on, `**settings: Unpack[RemoteSettings]`;
    it makes its SDK client from `base_url`, `max_retries` and `timeout` and runs each request inside
    `async with self.limits`."""

    #: the spec prefix: `openai`, `vllm`, `anthropic`
    prefix: ClassVar[str]

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,  # the endpoint (None: the SDK's own; `vllm:` reads BESTOFN_BASE_URL)
        concurrency: int | None = None,  # calls in flight (None: BESTOFN_CONCURRENCY, else DEFAULT_CONCURRENCY)
        rpm: int | None = None,  # requests per minute (None: BESTOFN_RPM, else no limit)
        max_retries: int = DEFAULT_MAX_RETRIES,
        timeout: float = DEFAULT_TIMEOUT,
        price: Price | None = None,  # US dollars per million prompt and completion tokens (None: pricing's table)
    ) -> None:
        self.model = model
        self.spec = f"{self.prefix}:{model}" if model else self.prefix
        self.base_url, self.price = base_url, price
        self.max_retries, self.timeout = max_retries, timeout
        self.limits = Limits(concurrency, rpm)


class PerLoop:
    """Holds one object per running event loop: `await per_loop.get()`. The object is closed (`await
    close(obj)`) when asyncio shuts the loop down, through an async generator the loop finalizes."""

    def __init__(self, make: Callable[[], Any], close: Callable[[Any], Awaitable[None]]) -> None:
        self._make, self._close = make, close
        self._loop: Any = None
        self._obj: Any = None
        self._guard: Any = None

    async def get(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._obj is None:
            obj = self._make()
            self._obj, self._loop = obj, loop
            self._guard = self._guarded(obj)
            await self._guard.__anext__()  # started here, so `loop.shutdown_asyncgens()` closes it
        return self._obj

    async def _guarded(self, obj: Any) -> AsyncIterator[None]:
        try:
            yield
        finally:
            if self._obj is obj:
                self._obj = self._loop = None
            await self._close(obj)

    async def aclose(self) -> None:
        if self._guard is not None and self._loop is asyncio.get_running_loop():
            guard, self._guard = self._guard, None
            await guard.aclose()


async def fan_out(one: Callable[[int], Awaitable[Completion]], n: int) -> AsyncIterator[tuple[int, Completion]]:
    """Yield (index, completion) for `one(0) .. one(n-1)`, in completion order."""

    async def indexed(i: int) -> tuple[int, Completion]:
        return i, await one(i)

    tasks = [asyncio.ensure_future(indexed(i)) for i in range(n)]
    try:
        for next_done in asyncio.as_completed(tasks):
            yield await next_done
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def collect(stream: AsyncIterator[tuple[int, Completion]], n: int) -> list[Completion]:
    """Gather a stream of (index, completion) back into sample order."""
    out: list[Completion | None] = [None] * n
    async for index, completion in stream:
        out[index] = completion
    assert all(c is not None for c in out), "a backend stream ended early"
    return out  # type: ignore[return-value]
