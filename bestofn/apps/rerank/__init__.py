"""RAG document reranking with bestofn's machinery: `rerank(query, documents, top_n=K, method=...)`.

See `bestofn.rerank.api` for the methods and the result shape (Cohere's: index, relevance_score, document).
Encoders (sentence-transformers) are imported only when an encoder method runs.
"""

from bestofn.apps.rerank.api import (
    DEFAULT_METHOD,
    METHODS,
    RerankMeta,
    RerankResponse,
    RerankResult,
    arerank,
    normalize_documents,
    rerank,
)
from bestofn.apps.rerank.metrics import mean_ndcg_at_k, mean_reciprocal_rank, ndcg_at_k, reciprocal_rank

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "RerankMeta",
    "RerankResponse",
    "RerankResult",
    "arerank",
    "mean_ndcg_at_k",
    "mean_reciprocal_rank",
    "ndcg_at_k",
    "normalize_documents",
    "reciprocal_rank",
    "rerank",
]
