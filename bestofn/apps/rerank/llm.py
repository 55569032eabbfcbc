"""LLM rerankers over bestofn's backend seam, with structured output and the shared call cache.

- `llm-pointwise`: one call per document, `{"score": 0..10}` (an enum in the JSON schema, so grammars enforce
  the range; validated again here; one re-ask on a bad reply, as the judges do). relevance_score = score / 10.
  Every document's call is issued at once: remote backends bound the concurrency, the embedded model queues
  them. A document still without a valid reply, or whose call failed, gets no score (None) and ranks last;
  the reason is kept in the stats.
- `llm-listwise`: RankGPT-style windows of labelled documents; the model returns `{"ranking": [labels]}`. Each
  window is the listwise judge's step (`bestofn.judging.listwise.rank_window`): the permutation is checked,
  re-asked once, then repaired; several back-to-front passes run until the requested top (or everything) is
  settled or a pass changes nothing. relevance_score = 1 - position / n: a rank, not a probability.

Calls go through `CachedBackend` (key: backend, messages, i.e. template + query + documents, parameters), so a
repeated rerank makes no call. Document text is untrusted: it sits between hash-derived delimiters.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache, cached
from bestofn.errors import BackendError, ConfigError
from bestofn.judging.asking import ask_structured
from bestofn.judging.delimiters import delimit
from bestofn.judging.listwise import WindowTally, rank_window
from bestofn.judging.permutation import labels, sliding_windows
from bestofn.backends.meter import MeteredBackend
from bestofn.apps.rerank.base import Ranker
from bestofn.config.templates import load_template

POINTWISE_TEMPLATE = "relevance.v1"
LISTWISE_TEMPLATE = "rerank_listwise.v1"
LOW, HIGH = 0, 10


@lru_cache(maxsize=1)
def relevance_model() -> type[BaseModel]:
    return create_model(
        "Relevance",
        __config__=ConfigDict(extra="forbid"),
        score=(Literal[tuple(range(LOW, HIGH + 1))], Field(description=f"An integer from {LOW} to {HIGH}.")),
    )


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + " [...]"


class _LLMRanker(Ranker):
    def __init__(self, backend: Backend, *, cache: Cache | None, seed: int = 0, max_doc_chars: int = 4000) -> None:
        super().__init__()
        self.backend = MeteredBackend(cached(backend, cache), self.stats.meter)
        self.model = backend.spec
        self.seed, self.max_doc_chars = seed, max_doc_chars

    def _delimit(self, text: str) -> str:
        return delimit(_clip(text, self.max_doc_chars), seed=self.seed, judge=self.method, label="document")


class PointwiseRanker(_LLMRanker):
    method = "llm-pointwise"

    def __init__(self, backend: Backend, *, template: str = POINTWISE_TEMPLATE, **kw) -> None:
        super().__init__(backend, **kw)
        self.template = load_template(template)
        self.output_model = relevance_model()

    async def _one(self, query: str, text: str) -> float | None:
        messages = self.template.render(query=query, document=self._delimit(text), low=LOW, high=HIGH)
        try:
            (reply,) = await ask_structured(self.backend, messages, self.output_model, max_tokens=16,
                                            temperature=0.0, seed=self.seed, judge=self.method)
        except BackendError as exc:
            self.stats.problems.append(str(exc))
            return None
        if not reply.ok:
            self.stats.problems.append(f"invalid reply {(reply.raw or '')[:80]!r}: {reply.problem}")
            return None
        return reply.obj.score / HIGH  # type: ignore[union-attr]

    async def score(self, query: str, texts: list[str], top_n: int | None = None) -> list[float | None]:
        scores = list(await asyncio.gather(*(self._one(query, t) for t in texts)))
        self.stats.scored += len(texts)
        self.stats.failed += sum(1 for s in scores if s is None)
        return scores


@dataclass
class ListwiseLog(WindowTally):
    """The last query's windows: the judge's window tally (calls, permutations re-asked, repaired, failed
    windows, every problem), plus the passes run, the windows ranked and each window's (start, size)."""

    passes: int = 0
    windows: int = 0
    sizes: list[tuple[int, int]] = field(default_factory=list)


class ListwiseRanker(_LLMRanker):
    method = "llm-listwise"

    def __init__(
        self, backend: Backend, *, template: str = LISTWISE_TEMPLATE, window: int = 20, step: int = 10,
        max_passes: int | None = None, max_doc_chars: int = 1000, **kw,
    ) -> None:
        super().__init__(backend, max_doc_chars=max_doc_chars, **kw)
        if window < 2 or not 1 <= step < window:
            raise ConfigError(f"listwise window must be at least 2 and step between 1 and window - 1; "
                              f"got window {window}, step {step}")
        self.template = load_template(template)
        self.window, self.step, self.max_passes = window, step, max_passes
        self.log = ListwiseLog()

    async def _rank_window(self, query: str, docs: list[str], chunk: list[int]) -> list[int]:
        window_labels = labels(len(chunk))
        shown = [{"label": label, "text": docs[i]} for label, i in zip(window_labels, chunk)]
        messages = self.template.render(query=query, documents=shown, labels=window_labels)
        try:
            return await rank_window(self.backend, messages, window_labels, self.log, max_tokens=16 + 4 * len(chunk),
                                     temperature=0.0, seed=self.seed, judge=self.method)
        except BackendError as exc:  # a failed window keeps its incoming order
            self.log.failed += 1
            self.log.problems.append(str(exc))
            return list(range(len(chunk)))

    async def score(self, query: str, texts: list[str], top_n: int | None = None) -> list[float | None]:
        self.log = ListwiseLog()
        docs = [self._delimit(t) for t in texts]
        n = len(texts)
        result = await sliding_windows(list(range(n)), lambda chunk: self._rank_window(query, docs, chunk),
                                       window=self.window, step=self.step, max_passes=self.max_passes, top_n=top_n)
        self.log.passes, self.log.windows, self.log.sizes = result.passes, result.calls, result.windows
        self.stats.problems.extend(self.log.problems)
        self.stats.scored += n
        scores: list[float | None] = [None] * n
        for position, i in enumerate(result.order):
            scores[i] = 1.0 - position / n
        return scores
