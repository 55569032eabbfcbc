"""messages -> n Candidates. Identical texts are kept, in sampling order, and marked as duplicates."""

from __future__ import annotations

from bestofn.backends.base import Backend, SamplingParams
from bestofn.records import Candidate, Message, text_id


async def generate(
    backend: Backend, messages: list[Message], *, n: int, temperature: float, max_tokens: int, seed: int
) -> list[Candidate]:
    params = SamplingParams(n=n, temperature=temperature, max_tokens=max_tokens, seed=seed)
    completions = await backend.sample(messages, params)
    first_index: dict[str, int] = {}
    candidates = []
    for index, completion in enumerate(completions):
        cid = text_id(completion.text)
        candidates.append(
            Candidate(
                id=cid,
                index=index,
                text=completion.text,
                finish_reason=completion.finish_reason,
                model=backend.spec,
                params={"temperature": temperature, "max_tokens": max_tokens, "seed": seed, "sample": index},
                usage=completion.usage,
                latency_s=round(completion.latency_s, 4),
                duplicate_of=first_index.get(cid),
            )
        )
        first_index.setdefault(cid, index)
    return candidates
