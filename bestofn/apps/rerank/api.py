"""`rerank(query, documents, top_n=K, method=...)` and `arerank`: Cohere-shaped results, best first.

Methods (`method=`):

| method | needs | relevance_score |
|---|---|---|
| `llm-pointwise` (default) | a backend (`model=`, default `local`: works with the base install + `local`) | model's 0-10 / 10 |
| `llm-listwise` | a backend | 1 - rank / n (a rank, not a probability) |
| `bi-encoder` | extra `rerank`; `encoder=` folder, default the packaged all-MiniLM-L6-v2 | cosine similarity |
| `cross-encoder` | extra `rerank`; `encoder=` folder (required: none ships offline) | model output (sigmoid) |
| `cascade` | both: `stages="bi-encoder:20,llm-pointwise"` by default | the last stage's score |

The default is `llm-pointwise` on `local` because it is the one method that runs offline with nothing beyond
`pip install 'bestofn[local]'`; the bi-encoder needs torch. But the tiny default model (SmolLM2-135M) gives
nearly every document the same score, so ties keep the incoming order and the default does little more than
return the documents in the order given (bench/bench_rerank.py): use `bi-encoder`, `cascade`, or an `llm-*`
method with a capable `model=` where quality matters.

A cascade returns only the documents that survive every stage (at most the last stage's k, or top_n).

Results hold `index` (position in `documents`), `relevance_score` (None when an LLM gave no valid score:
such documents rank last) and `document` (`{"text": ...}` for a string, the caller's dict otherwise). Equal
scores keep the incoming order. `meta` reports the method, counts, cache hits, calls, tokens and time, one
entry per stage. Results are cached (see `encoders` and `llm`); `cache=False` turns that off.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache, resolve_cache
from bestofn.errors import BackendError, ConfigError
from bestofn.records import Record, Spend
from bestofn.apps.rerank.base import Ranker
from bestofn.apps.rerank.cascade import DEFAULT_CASCADE, StageReport, parse_stages, run_stages
from bestofn.sync import run_sync

METHODS = ("llm-pointwise", "llm-listwise", "bi-encoder", "cross-encoder", "cascade")
DEFAULT_METHOD = "llm-pointwise"
ENCODER_METHODS = ("bi-encoder", "cross-encoder")


class RerankResult(Record):
    index: int
    relevance_score: float | None
    document: dict[str, Any]


class RerankMeta(Record):
    method: str
    model: str  # the last stage's model
    documents: int
    returned: int
    cache_hits: int
    llm_calls: int
    failed: int  # documents left without a valid score (they rank last)
    seconds: float
    stages: list[StageReport]


class RerankResponse(Record):
    results: list[RerankResult]
    meta: RerankMeta


def normalize_documents(documents: Sequence[str | Mapping[str, Any]], text_field: str = "text") -> list[dict[str, Any]]:
    """Strings become `{"text": s}`; mappings need a string under `text_field`."""
    if isinstance(documents, (str, bytes)) or not isinstance(documents, Sequence):
        raise ConfigError("documents must be a list of strings or of dicts with a text field")
    out = []
    for i, doc in enumerate(documents):
        if isinstance(doc, str):
            out.append({"text": doc})
        elif isinstance(doc, Mapping):
            text = doc.get(text_field)
            if not isinstance(text, str):
                raise ConfigError(f"document {i}: no string field {text_field!r} (keys: {', '.join(map(str, doc))})")
            out.append(dict(doc))
        else:
            raise ConfigError(f"document {i}: expected a string or a dict, got {type(doc).__name__}")
    return out


def make_ranker(
    method: str, *, model: str | Backend = "local", encoder: str | Path | None = None, base_url: str | None = None,
    cache: Cache | None = None, seed: int = 0, batch_size: int = 32, window: int = 20, step: int = 10,
    max_passes: int | None = None, template: str | None = None,
) -> Ranker:
    """One method's ranker (not `cascade`: see `arerank`)."""
    if method in ENCODER_METHODS:
        from bestofn.apps.rerank.encoders import BiEncoderRanker, CrossEncoderRanker

        cls = BiEncoderRanker if method == "bi-encoder" else CrossEncoderRanker
        return cls(encoder, cache=cache, batch_size=batch_size)
    from bestofn.apps.rerank.llm import ListwiseRanker, PointwiseRanker

    backend = load_backend(model, base_url)
    own = {} if template is None else {"template": template}
    if method == "llm-pointwise":
        return PointwiseRanker(backend, cache=cache, seed=seed, **own)
    if method == "llm-listwise":
        return ListwiseRanker(backend, cache=cache, seed=seed, window=window, step=step, max_passes=max_passes, **own)
    raise ConfigError(f"unknown rerank method {method!r}; one of {', '.join(METHODS)}")


async def arerank(
    query: str,
    documents: Sequence[str | Mapping[str, Any]],
    *,
    top_n: int | None = None,
    method: str = DEFAULT_METHOD,
    model: str | Backend = "local",
    encoder: str | Path | None = None,
    stages: str | None = None,
    base_url: str | None = None,
    seed: int = 0,
    cache: Cache | str | Path | bool | None = None,
    text_field: str = "text",
    batch_size: int = 32,
    window: int = 20,
    step: int = 10,
    max_passes: int | None = None,
    template: str | None = None,
) -> RerankResponse:
    """Rerank `documents` for `query`; results best first, at most `top_n` of them (default: all).

    `model` is the backend for LLM methods; `encoder` the local folder for encoder methods; `stages` the
    cascade's `"METHOD:K,METHOD[:K]"` (default `bi-encoder:20,llm-pointwise`). `window`/`step`/`max_passes`
    tune llm-listwise; `template` replaces the LLM prompt (a built-in name or a .md.j2 path; pointwise
    templates get `query`, `document`, `low`, `high`, listwise ones `query`, `documents` [{label, text}],
    `labels`). `cache`: None or True for the default cache, False for none, or a folder.
    """
    started = time.perf_counter()
    if method not in METHODS:
        raise ConfigError(f"unknown rerank method {method!r}; one of {', '.join(METHODS)}")
    if not isinstance(query, str) or not query.strip():
        raise ConfigError("the query must be a non-empty string")
    if top_n is not None and top_n < 1:
        raise ConfigError(f"top_n must be at least 1, got {top_n}")
    if stages is not None and method != "cascade":
        raise ConfigError("stages= applies to method='cascade' only")
    docs = normalize_documents(documents, text_field)
    plan = parse_stages(stages or DEFAULT_CASCADE, METHODS) if method == "cascade" else None
    store = resolve_cache(cache)
    options = dict(model=model, encoder=encoder, base_url=base_url, cache=store, seed=seed, batch_size=batch_size,
                   window=window, step=step, max_passes=max_passes, template=template)
    if plan is None:
        rankers: list[tuple[Ranker, int | None]] = [(make_ranker(method, **options), None)]
    else:
        rankers = [(make_ranker(s.method, **options), s.top_k) for s in plan]

    texts = [d[text_field] for d in docs]
    ranked, reports = await run_stages(query, texts, rankers, top_n)
    if texts and all(score is None for _, score in ranked):
        last = reports[-1]
        raise BackendError(last.model, f"{last.method}: no document got a valid score"
                           + (f" (first problem: {last.problems[0]})" if last.problems else ""))
    results = [RerankResult(index=i, relevance_score=score, document=docs[i]) for i, score in ranked]
    spent = sum(reports, Spend())
    meta = RerankMeta(
        method=method, model=reports[-1].model if reports else str(model), documents=len(docs), returned=len(results),
        cache_hits=spent.cache_hits, llm_calls=spent.calls,
        failed=sum(1 for r in results if r.relevance_score is None), seconds=round(time.perf_counter() - started, 4),
        stages=reports,
    )
    return RerankResponse(results=results, meta=meta)


def rerank(query: str, documents: Sequence[str | Mapping[str, Any]], **options: Any) -> RerankResponse:
    """Sync wrapper of `arerank` (same keyword arguments)."""
    return run_sync(arerank(query, documents, **options))
