"""Counts a selection's model calls, tokens and money at the backend seam (a wrapper that is itself a Backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.backends.pricing import Price, price_for, usd
from bestofn.records import Message


@dataclass
class Meter:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    #: US dollars over the calls whose price is known (bestofn.backends.pricing); None while none is
    usd: float | None = None
    unpriced_calls: int = 0

    def record(self, completions: list[Completion], price: Price | None = None) -> None:
        for c in completions:
            if c.cached:
                self.cache_hits += 1
                continue
            self.calls += 1
            self.prompt_tokens += c.usage.prompt_tokens
            self.completion_tokens += c.usage.completion_tokens
            cost = usd(c.usage, price)
            if cost is None:
                self.unpriced_calls += 1
            else:
                self.usd = (self.usd or 0.0) + cost


def innermost(backend: Backend) -> Backend:
    """The backend under any wrappers (meter, cache): the one whose traits (serial, price) count."""
    while isinstance(getattr(backend, "inner", None), Backend):
        backend = backend.inner  # type: ignore[attr-defined]
    return backend


class MeteredBackend(Backend):
    def __init__(self, inner: Backend, meter: Meter):
        self.inner, self.meter = inner, meter
        self.spec = inner.spec
        base = innermost(inner)
        self.price = getattr(base, "price", None) or price_for(base.spec)

    @property
    def serial(self) -> bool:  # type: ignore[override]
        # asked of the innermost backend each time: a server's flavour (and so its seriality) may be found late
        return innermost(self.inner).serial

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        completions = await self.inner.sample(messages, params)
        self.meter.record(completions, self.price)
        return completions

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        from bestofn.generate import completions_as_ready

        async for index, completion in completions_as_ready(self.inner, messages, params):
            self.meter.record([completion], self.price)
            yield index, completion
