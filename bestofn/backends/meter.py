"""Counts a selection's model calls, tokens and money at the backend seam (a wrapper that is itself a Backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.backends.pricing import Price, usd_for
from bestofn.records import Message


@dataclass
class Meter:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0
    #: US dollars over the calls whose price is known (bestofn.backends.pricing); None while none is
    usd: float | None = None
    #: the calls that `usd` leaves out (no price known): shown beside the money wherever it is
    unpriced_calls: int = 0

    def record(self, completions: list[Completion], spec: str = "", price: Price | None = None) -> None:
        for c in completions:
            if c.cached:
                self.cache_hits += 1
                continue
            self.calls += 1
            self.prompt_tokens += c.usage.prompt_tokens
            self.completion_tokens += c.usage.completion_tokens
            cost = usd_for(spec, c.usage, price)
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
        self.price_spec, self.price = base.spec, getattr(base, "price", None)  # priced per call (pricing.usd_for)

    @property
    def serial(self) -> bool:  # type: ignore[override]
        # asked of the innermost backend each time: a server's flavour (and so its seriality) may be found late
        return innermost(self.inner).serial

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        completions = await self.inner.sample(messages, params)
        self.meter.record(completions, self.price_spec, self.price)
        return completions

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        async for index, completion in self.inner.sample_stream(messages, params):
            self.meter.record([completion], self.price_spec, self.price)
            yield index, completion


def describe_cost(usd: float | None, calls: int, unpriced_calls: int) -> str:
    """The money and the calls it leaves out, for a cost line: `$0.012345`, `$0.012345 (3 of 20 calls unpriced)`,
    `$? (20 of 20 calls unpriced)` (self-hosted models, or ones no price is known for)."""
    unpriced = unpriced_calls if usd is not None else unpriced_calls or calls
    money = "$?" if usd is None and unpriced else f"${usd or 0.0:.6f}"  # the JSON cost's precision
    return f"{money} ({unpriced} of {calls} calls unpriced)" if unpriced else money
