"""Ranking quality: nDCG@k and MRR over a ranking (ids, best first) and graded relevance labels (qrels).

Conventions follow trec_eval: linear gain (the label itself; `gain="exponential"` uses 2**label - 1, as in
Burges et al.), discount 1 / log2(rank + 1), the ideal ranking sorts every labelled document by its label
(documents missing from the ranking still count in the ideal), and a query with no relevant document scores 0.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Literal

Qrels = Mapping[Hashable, float]  # document id -> graded label; 0 or absent means not relevant


def _gain(label: float, gain: str) -> float:
    if label <= 0:
        return 0.0
    return 2.0**label - 1.0 if gain == "exponential" else float(label)


def dcg_at_k(labels: Iterable[float], k: int, gain: Literal["linear", "exponential"] = "linear") -> float:
    """Discounted cumulative gain of the first k labels, in ranked order."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    total = 0.0
    for rank, label in enumerate(labels, start=1):
        if rank > k:
            break
        total += _gain(label, gain) / math.log2(rank + 1)
    return total


def ndcg_at_k(
    ranking: Sequence[Hashable], qrels: Qrels, k: int = 10, gain: Literal["linear", "exponential"] = "linear"
) -> float:
    """nDCG@k of `ranking` (document ids, best first) against `qrels`; 0.0 when nothing is relevant."""
    ideal = dcg_at_k(sorted((v for v in qrels.values() if v > 0), reverse=True), k, gain)
    if ideal == 0.0:
        return 0.0
    return dcg_at_k((qrels.get(doc, 0.0) for doc in ranking), k, gain) / ideal


def reciprocal_rank(ranking: Sequence[Hashable], qrels: Qrels, k: int | None = None) -> float:
    """1 / rank of the first relevant document (label > 0) within the first k; 0.0 if none."""
    for rank, doc in enumerate(ranking, start=1):
        if k is not None and rank > k:
            break
        if qrels.get(doc, 0.0) > 0:
            return 1.0 / rank
    return 0.0


def mean_reciprocal_rank(runs: Iterable[tuple[Sequence[Hashable], Qrels]], k: int | None = None) -> float:
    """MRR over (ranking, qrels) pairs, one per query."""
    values = [reciprocal_rank(ranking, qrels, k) for ranking, qrels in runs]
    if not values:
        raise ValueError("mean_reciprocal_rank needs at least one query")
    return sum(values) / len(values)


def mean_ndcg_at_k(
    runs: Iterable[tuple[Sequence[Hashable], Qrels]], k: int = 10, gain: Literal["linear", "exponential"] = "linear"
) -> float:
    values = [ndcg_at_k(ranking, qrels, k, gain) for ranking, qrels in runs]
    if not values:
        raise ValueError("mean_ndcg_at_k needs at least one query")
    return sum(values) / len(values)
