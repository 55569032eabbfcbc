"""Counts a selection's model calls and tokens at the backend seam (a wrapper that is itself a Backend)."""

from __future__ import annotations

from dataclasses import dataclass

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.records import Message


@dataclass
class Meter:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_hits: int = 0

    def record(self, completions: list[Completion]) -> None:
        for c in completions:
            if c.cached:
                self.cache_hits += 1
                continue
            self.calls += 1
            self.prompt_tokens += c.usage.prompt_tokens
            self.completion_tokens += c.usage.completion_tokens


class MeteredBackend(Backend):
    def __init__(self, inner: Backend, meter: Meter):
        self.inner, self.meter = inner, meter
        self.spec, self.serial = inner.spec, inner.serial

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        completions = await self.inner.sample(messages, params)
        self.meter.record(completions)
        return completions
