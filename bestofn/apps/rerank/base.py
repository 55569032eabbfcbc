"""The reranker seam: score a query's documents (one method), and the counters every method keeps."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import ClassVar

from bestofn.backends.meter import Meter


@dataclass
class RankerStats:
    """Counted per reranker: documents scored by a model or left without a score, and in `meter` its Spend: the
    LLM calls, tokens and money (an LLM ranker's backend records there) and the cache hits (an LLM ranker's calls
    answered from the call cache; an encoder's documents whose score was cached)."""

    scored: int = 0
    failed: int = 0
    batches: int = 0  # encoder forward batches
    problems: list[str] = field(default_factory=list)  # why a document or a window failed, one line each
    meter: Meter = field(default_factory=Meter)


class Ranker(ABC):
    """One reranking method. `score` returns one value per text, higher is better; None means no valid score
    (the document then ranks after every scored one). Equal scores keep the incoming order."""

    method: ClassVar[str]
    model: str  # what the results report as the model: a backend spec or an encoder folder

    def __init__(self) -> None:
        self.stats = RankerStats()

    @abstractmethod
    async def score(self, query: str, texts: list[str], top_n: int | None = None) -> list[float | None]:
        """Scores aligned with `texts`; `top_n` is a hint for methods that can stop once the top is known."""
