"""Counts a selection's model calls, tokens and money at the backend seam (a wrapper that is itself a Backend)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from bestofn.backends.base import Backend, Completion, SamplingParams, WrappedBackend
from bestofn.backends.pricing import Price, usd_for
from bestofn.records import Message, Spend


@dataclass
class Meter:
    """The running Spend of the calls through MeteredBackends (one selection's, one build item's, one ranker's)."""

    spend: Spend = field(default_factory=Spend)

    def record(self, completions: list[Completion], spec: str = "", price: Price | None = None) -> None:
        for c in completions:  # a cached completion is a hit: no call, no tokens, no money
            self.spend += Spend(cache_hits=1) if c.cached else Spend.call(c.usage, usd_for(spec, c.usage, price))


class MeteredBackend(WrappedBackend):
    """Counts each completion through it into `meter`, priced by the inner backend's spec and price."""

    def __init__(self, inner: Backend, meter: Meter):
        super().__init__(inner)
        self.meter = meter

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        completions = await self.inner.sample(messages, params)
        self.meter.record(completions, self.spec, self.price)
        return completions

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        async for index, completion in self.inner.sample_stream(messages, params):
            self.meter.record([completion], self.spec, self.price)
            yield index, completion


def describe_cost(cost: Spend) -> str:
    """The money and the calls it leaves out, for a cost line: `$0.012345`, `$0.012345 (3 of 20 calls unpriced)`,
    `$? (20 of 20 calls unpriced)` (self-hosted models, or ones no price is known for)."""
    unpriced = cost.unpriced_calls if cost.usd is not None else cost.unpriced_calls or cost.calls
    money = "$?" if cost.usd is None and unpriced else f"${cost.usd or 0.0:.6f}"  # the JSON cost's precision
    return f"{money} ({unpriced} of {cost.calls} calls unpriced)" if unpriced else money
