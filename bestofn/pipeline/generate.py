"""messages -> n Candidates. Identical texts are kept, in sampling order, and marked as duplicates."""

from __future__ import annotations

from collections.abc import AsyncIterator

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.records import Candidate, Message, text_id


async def generate(
    backend: Backend, messages: list[Message], *, n: int, temperature: float, max_tokens: int, seed: int
) -> list[Candidate]:
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    completions = await backend.sample(messages, params)
    return mark_duplicates([to_candidate(backend, i, c, params) for i, c in enumerate(completions)])


async def stream_candidates(
    backend: Backend, messages: list[Message], *, n: int, temperature: float, max_tokens: int, seed: int
) -> AsyncIterator[Candidate]:
    """Yield the n Candidates as each one arrives (arrival order, `duplicate_of` not set yet: pass the full
    list to `mark_duplicates`), from the backend's `sample_stream`."""
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    async for index, completion in backend.sample_stream(messages, params):
        yield to_candidate(backend, index, completion, params)


def to_candidate(backend: Backend, index: int, completion: Completion, params: SamplingParams) -> Candidate:
    return Candidate(
        id=text_id(completion.text),
        index=index,
        text=completion.text,
        finish_reason=completion.finish_reason,
        model=backend.spec,
        params={"temperature": params.temperature, "max_tokens": params.max_tokens, "seed": params.seed,
                "sample": index},
        usage=completion.usage,
        latency_s=round(completion.latency_s, 4),
    )


def mark_duplicates(candidates: list[Candidate]) -> list[Candidate]:
    """Sampling order, each identical text marked with the index of its first occurrence."""
    first_index: dict[str, int] = {}
    out = []
    for candidate in sorted(candidates, key=lambda c: c.index):
        first = first_index.setdefault(candidate.id, candidate.index)
        out.append(candidate if first == candidate.index else candidate.model_copy(update={"duplicate_of": first}))
    return out
