"""The one seam every backend implements: sample n completions for a list of messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from bestofn.records import Message, Record, Usage


class SamplingParams(Record):
    n: int = Field(default=1, ge=1, le=64)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1)
    seed: int = 0
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    top_logprobs: int | None = Field(default=None, ge=0, le=20)


class TokenLogprob(Record):
    token: str
    logprob: float
    top: dict[str, float] = Field(default_factory=dict)


class Completion(Record):
    text: str
    finish_reason: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    logprobs: list[TokenLogprob] | None = None
    cached: bool = False


class Backend(ABC):
    """A backend samples. `spec` is the string it was made from (`local`, `openai:gpt-4o-mini`, ...)."""

    spec: str
    #: True where calls run one at a time (an embedded model): callers order them for prefix-cache reuse.
    serial: bool = False

    @abstractmethod
    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        """Return exactly `params.n` completions, in sample order."""

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        """(sample index, completion) as each one arrives, so a caller can judge a candidate as soon as it exists.
        Default: all n together, from `sample`; a backend that fans out overrides it."""
        for index, completion in enumerate(await self.sample(messages, params)):
            yield index, completion

    async def aclose(self) -> None:  # pragma: no cover - default: nothing to release
        return None
