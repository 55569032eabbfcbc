"""The one seam every backend implements: sample n completions for a list of messages."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from typing import Any

from pydantic import Field

from bestofn.backends.pricing import Price
from bestofn.records import Message, Record, Usage


class SamplingParams(Record):
    n: int = Field(default=1, ge=1, le=64)
    temperature: float = Field(default=0.8, ge=0.0, le=2.0)
    max_tokens: int = Field(default=512, ge=1)
    seed: int = 0
    json_schema: dict[str, Any] | None = None  # constrain the output to this JSON schema
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # A budget for the JSON string a constrained reply is writing (a judge's reasoning): past this many reply
    # tokens, a backend that `closes_strings` ends that string, the reply goes on under its schema, and it ends
    # with finish_reason "budget" instead of "stop". Other backends ignore it (max_tokens still bounds the reply).
    close_strings_at: int | None = Field(default=None, ge=1)


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
    """A backend samples. `spec` is the string it was made from (`local`, `openai:gpt-4o-mini`, ...).

    Only `sample` is required. The optional traits are declared here with their defaults; a backend overrides
    the ones it has, and a wrapper (the call cache, the meter: `WrappedBackend`) reads its inner backend's.
    """

    spec: str
    #: the model name it asks for ("" where the spec says it all, or until a server names it: see `resolve`)
    model: str = ""
    #: the endpoint it talks to, where it talks to one (the call cache keys on it)
    base_url: str | None = None
    #: what else decides its replies, where something does (the local model's weight format; the cache keys on it)
    variant: str | None = None
    #: True where calls run one at a time (an embedded model): callers order them for prefix-cache reuse.
    serial: bool = False
    #: tokens the model's context holds (prompt and reply), where known: judges check their prompts against it
    context_window: int | None = None
    #: US dollars per million prompt and completion tokens, where given (else bestofn.backends.pricing's)
    price: Price | None = None
    #: True where the backend honours SamplingParams.close_strings_at (the call cache keys on it only there)
    closes_strings: bool = False
    #: False for a backend whose replies must never be cached (a scripted test double)
    cacheable: bool = True
    #: the backend a wrapper wraps; None for one that samples itself
    inner: Backend | None = None

    @abstractmethod
    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        """Return exactly `params.n` completions, in sample order."""

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        """(sample index, completion) as each one arrives, so a caller can judge a candidate as soon as it exists.
        Default: all n together, from `sample`; a backend that fans out overrides it."""
        for index, completion in enumerate(await self.sample(messages, params)):
            yield index, completion

    async def resolve(self) -> str | None:
        """Learn what only the other side knows, before the first call (`vllm:` asks the server its flavour, and
        so whether it is serial, and its model name when the spec names none). Default: nothing to learn."""
        return None

    async def count_tokens(self, text: str) -> int | None:
        """Tokens of `text` by the model's own tokenizer; None where the backend has none (judges then estimate)."""
        return None

    async def aclose(self) -> None:  # pragma: no cover - default: nothing to release
        return None


class WrappedBackend(Backend):
    """A backend around another (the call cache, the meter) that changes how calls are made, not what the
    backend is: every trait is the inner backend's, read through each time (a server learns its flavour late).
    A subclass overrides `sample` (and `sample_stream`)."""

    def __init__(self, inner: Backend) -> None:
        self.inner: Backend = inner

    # read-only views of the inner backend's traits
    spec = property(lambda self: self.inner.spec)  # type: ignore[assignment]
    model = property(lambda self: self.inner.model)  # type: ignore[assignment]
    base_url = property(lambda self: self.inner.base_url)  # type: ignore[assignment]
    variant = property(lambda self: self.inner.variant)  # type: ignore[assignment]
    serial = property(lambda self: self.inner.serial)  # type: ignore[assignment]
    context_window = property(lambda self: self.inner.context_window)  # type: ignore[assignment]
    price = property(lambda self: self.inner.price)  # type: ignore[assignment]
    closes_strings = property(lambda self: self.inner.closes_strings)  # type: ignore[assignment]
    cacheable = property(lambda self: self.inner.cacheable)  # type: ignore[assignment]

    async def resolve(self) -> str | None:
        return await self.inner.resolve()

    async def count_tokens(self, text: str) -> int | None:
        return await self.inner.count_tokens(text)

    async def aclose(self) -> None:
        await self.inner.aclose()


def innermost(backend: Backend) -> Backend:
    """The backend under any wrappers: the one that samples."""
    while backend.inner is not None:
        backend = backend.inner
    return backend
