"""A content-addressed cache of model calls, shared by the generator and the judges.

`CachedBackend` wraps any Backend. Each sampled completion is stored under a key derived from everything that
decides it: the backend spec (and base URL), the messages (a judge's rendered prompt, so the template's hash is
covered), temperature, max_tokens, seed, the sample's index, the JSON schema and top_logprobs. A cache hit
returns the stored completion with `cached=True`, which the Meter counts as a hit, not a call; so a rerun with
the same seed returns the same candidates and the same verdicts without calling a model.

Storage is one SQLite file in WAL mode (safe for many processes and threads), evicted least-recently-used past
a size limit. A truncated or corrupt file is detected (on opening or on any read) and rebuilt: a cache never breaks a run.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
import time
import warnings
import weakref
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bestofn.backends.base import Backend, Completion, SamplingParams, WrappedBackend
from bestofn.sinks.locking import FileLock
from bestofn.records import Message, sha256_hex

FORMAT = 1  # bump when the key or the stored value changes meaning
DEFAULT_SIZE_LIMIT = 2 * 1024**3  # bytes
FLUSH_SECONDS = 0.05  # new entries reach the file in batches, at most this long after they were stored
FILENAME = "calls.sqlite"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    accessed REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_accessed ON calls (accessed);
"""


def default_cache_dir() -> Path:
    env = os.environ.get("BESTOFN_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("bestofn"))


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0
    writes: int = 0
    evicted: int = 0
    rebuilt: int = 0


class Cache:
    """Completions by key in one SQLite file (WAL). Thread-safe; many processes may share the file."""

    def __init__(self, directory: str | Path | None = None, *, size_limit: int = DEFAULT_SIZE_LIMIT):
        self.dir = Path(directory).expanduser() if directory is not None else default_cache_dir()
        self.path = self.dir / FILENAME
        self.size_limit = size_limit
        self.stats = CacheStats()
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._writes_since_check = 0
        self._pending: dict[str, tuple[str, float]] = {}  # key -> (value, last use): not in the file yet
        self._touched: dict[str, float] = {}  # key -> last use, for entries read from the file
        self._pending_lock = threading.Lock()
        self._flusher: threading.Thread | None = None
        self._wake = threading.Event()
        self._open()

    # -- opening, checking, rebuilding -------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None, check_same_thread=False)
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")  # WAL: durable across process crashes, fast commits
            conn.executescript(_SCHEMA)
            conn.execute("SELECT key FROM calls ORDER BY accessed LIMIT 1").fetchall()  # deeper damage: _run
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            self._rebuild(exc)

    def _rebuild(self, why: BaseException) -> None:
        """Drop a corrupt file and start an empty cache; one process at a time (a lock file)."""
        if self._conn is not None:
            try:
                self._conn.close()
            except sqlite3.Error:
                pass
            self._conn = None
        with FileLock(self.dir / (FILENAME + ".lock")):
            try:  # another process may have rebuilt it while we waited
                conn = self._connect()
                if conn.execute("PRAGMA quick_check(1)").fetchone()[0] == "ok":
                    self._conn = conn
                    return
                conn.close()
            except sqlite3.DatabaseError:
                pass
            for suffix in ("", "-wal", "-shm"):  # a cache is disposable: drop the damaged file
                (self.dir / (FILENAME + suffix)).unlink(missing_ok=True)
            self._conn = self._connect()
            self.stats.rebuilt += 1
        warnings.warn(f"bestofn cache {self.path} was unreadable ({why}); started a new one")

    def _run(self, fn: Any) -> Any:
        """Run fn(conn) under the lock; on corruption rebuild once and retry."""
        with self._lock:
            for attempt in (0, 1):
                try:
                    if self._conn is None:
                        self._conn = self._connect()
                    return fn(self._conn)
                except sqlite3.DatabaseError as exc:
                    busy = isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc))
                    if busy or attempt:
                        raise
                    self._rebuild(exc)
        return None  # pragma: no cover

    def _safe(self, fn: Any, default: Any) -> Any:
        """A cache that fails (locked for too long, unwritable disk) is a miss, never a failed run."""
        try:
            return self._run(fn)
        except sqlite3.Error as exc:
            warnings.warn(f"bestofn cache {self.path}: {exc}; continuing without it for this call")
            return default

    # -- the API -----------------------------------------------------------------------------------------

    def get_many(self, keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        now = time.time()
        with self._pending_lock:
            for k in keys:
                if k in self._pending:
                    found[k] = self._pending[k][0]
                    self._pending[k] = (found[k], now)
        rest = [k for k in keys if k not in found]

        def fetch(conn: sqlite3.Connection) -> dict[str, str]:
            marks = ",".join("?" * len(rest))
            return dict(conn.execute(f"SELECT key, value FROM calls WHERE key IN ({marks})", rest).fetchall())

        if rest:
            stored = self._safe(fetch, {})
            if stored:
                found.update(stored)
                with self._pending_lock:
                    self._touched.update(dict.fromkeys(stored, now))  # recency for eviction, in the next batch
                    self._start_flusher()
        self.stats.hits += len(found)
        self.stats.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, str]) -> None:
        """Store entries. They are readable at once in this process and written to the file in batches by a
        background thread within FLUSH_SECONDS (a process killed in between loses those entries: a cache
        miss later, never a wrong answer); `flush()` writes them now."""
        if not items:
            return
        now = time.time()
        with self._pending_lock:
            self._pending.update((k, (v, now)) for k, v in items.items())
            self._start_flusher()

    def _start_flusher(self) -> None:  # under _pending_lock
        self._wake.set()
        if self._flusher is None:
            self._flusher = threading.Thread(target=self._flush_loop, name="bestofn-cache", daemon=True)
            self._flusher.start()
            _open_caches.add(self)  # flushed at exit (atexit)

    def _flush_loop(self) -> None:
        while True:
            if not self._wake.wait(timeout=5.0):
                with self._pending_lock:  # idle for a while: end the thread (the next put starts another)
                    if not self._wake.is_set():
                        self._flusher = None
                        return
            time.sleep(FLUSH_SECONDS)  # gather a batch
            self._wake.clear()
            self.flush()

    def flush(self) -> None:
        with self._pending_lock:
            pending, self._pending = self._pending, {}
            touched, self._touched = self._touched, {}
        if not pending and not touched:
            return
        rows = [(k, v, len(k) + len(v), at, at) for k, (v, at) in pending.items()]
        touch = [(at, k) for k, at in touched.items() if k not in pending]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?, ?, ?, ?)", rows)
                conn.executemany("UPDATE calls SET accessed=? WHERE key=?", touch)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        self._safe(write, None)
        self.stats.writes += len(rows)
        self._writes_since_check += len(rows)
        if self._writes_since_check >= 256:
            self._writes_since_check = 0
            try:
                self.evict()
            except sqlite3.Error:
                pass

    def volume(self) -> int:
        """Bytes of live pages in the database file."""

        def measure(conn: sqlite3.Connection) -> int:
            pages = conn.execute("PRAGMA page_count").fetchone()[0]
            free = conn.execute("PRAGMA freelist_count").fetchone()[0]
            size = conn.execute("PRAGMA page_size").fetchone()[0]
            return (pages - free) * size

        return self._run(measure)

    def evict(self) -> int:
        """Delete least-recently-used entries until the file is under 90% of the size limit."""
        self.flush()
        excess = self.volume() - self.size_limit
        if excess <= 0:
            return 0
        target = excess + self.size_limit // 10

        def drop(conn: sqlite3.Connection) -> int:
            conn.execute("BEGIN IMMEDIATE")
            try:
                freed, victims = 0, []
                for key, size in conn.execute("SELECT key, size FROM calls ORDER BY accessed"):
                    victims.append((key,))
                    freed += size
                    if freed >= target:
                        break
                conn.executemany("DELETE FROM calls WHERE key=?", victims)
                conn.execute("COMMIT")
                return len(victims)
            except BaseException:
                conn.execute("ROLLBACK")
                raise

        count = self._run(drop)
        self.stats.evicted += count
        return count

    def __bool__(self) -> bool:  # an empty cache is still a cache
        return True

    def __len__(self) -> int:
        self.flush()
        return self._run(lambda conn: conn.execute("SELECT count(*) FROM calls").fetchone()[0])

    def clear(self) -> None:
        with self._pending_lock:
            self._pending.clear()
            self._touched.clear()
        self._run(lambda conn: conn.execute("DELETE FROM calls"))

    def close(self) -> None:
        self.flush()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


_caches: dict[Path, Cache] = {}
_open_caches: weakref.WeakSet[Cache] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:
    for cache in list(_open_caches):
        try:
            cache.flush()
        except Exception:  # pragma: no cover - never fail an exit over a cache
            pass

_caches_lock = threading.Lock()


def open_cache(directory: str | Path | None = None) -> Cache:
    """The process-wide Cache for a folder (default: BESTOFN_CACHE_DIR, else the user cache folder)."""
    path = (Path(directory).expanduser() if directory is not None else default_cache_dir()).resolve()
    with _caches_lock:
        if path not in _caches:
            _caches[path] = Cache(path)
        return _caches[path]


def resolve_cache(cache: Cache | str | Path | bool | None) -> Cache | None:
    """`None`/`True`: the default cache; `False`: no cache; a folder or a Cache: that one."""
    if cache is False:
        return None
    if cache is None or cache is True:
        return open_cache()
    if isinstance(cache, Cache):
        return cache
    return open_cache(cache)


def call_key(backend: Backend, messages: list[Message], params: SamplingParams, index: int) -> str:
    """The key of sample `index` of a call; `n` is left out, so sample i of n=4 is sample i of n=8."""
    return sha256_hex(
        "bestofn-call",
        FORMAT,
        backend.spec,
        backend.model or None,  # None, not "": the keys of backends that name no model stay as they were
        backend.base_url,
        [m.model_dump() for m in messages],
        # a string budget the backend ignores leaves the reply, and so the key, as it was
        params.model_dump(exclude={"n"} if backend.closes_strings and params.close_strings_at else
                          {"n", "close_strings_at"}),
        index,
        *([backend.variant] if backend.variant is not None else []),  # keys without a variant stay as they were
    )


def _hit(blob: str) -> Completion:
    return Completion.model_validate_json(blob).model_copy(update={"cached": True})


class CachedBackend(WrappedBackend):
    """A Backend that answers from the cache when it can. Put it below the MeteredBackend so hits are counted.

    A backend with `cacheable = False` (e.g. a scripted test double) is passed through untouched.
    """

    def __init__(self, inner: Backend, cache: Cache):
        super().__init__(inner)
        self.cache = cache

    async def _lookup(self, messages: list[Message], params: SamplingParams) -> tuple[list[str], dict[str, str]]:
        if not self.inner.model:
            await self.inner.resolve()  # a server backend that learns its model name from the server: key on that name
        keys = [call_key(self.inner, messages, params, i) for i in range(params.n)]
        return keys, self.cache.get_many(keys)

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        if not self.inner.cacheable:
            return await self.inner.sample(messages, params)
        keys, found = await self._lookup(messages, params)
        if len(found) == len(keys):
            return [_hit(found[k]) for k in keys]
        # Some or all samples are missing: make the call as asked (a backend's samples may depend on n), keep
        # the stored ones (they are what an earlier run saw) and store the new ones.
        fresh = await self.inner.sample(messages, params)
        out, new = [], {}
        for key, completion in zip(keys, fresh):
            if key in found:
                out.append(_hit(found[key]))
            else:
                out.append(completion)
                new[key] = completion.model_copy(update={"cached": False}).model_dump_json()
        self.cache.put_many(new)
        return out

    async def sample_stream(self, messages: list[Message], params: SamplingParams) -> AsyncIterator[tuple[int, Completion]]:
        """(sample index, completion) as each arrives; stored ones first, each new one stored on arrival."""
        if not self.inner.cacheable:
            for index, completion in enumerate(await self.sample(messages, params)):
                yield index, completion
            return
        keys, found = await self._lookup(messages, params)
        for index, key in enumerate(keys):
            if key in found:
                yield index, _hit(found[key])
        if len(found) == len(keys):
            return
        async for index, completion in self.inner.sample_stream(messages, params):
            if keys[index] in found:
                continue
            self.cache.put_many({keys[index]: completion.model_copy(update={"cached": False}).model_dump_json()})
            yield index, completion


def cached(backend: Backend, cache: Cache | None) -> Backend:
    return backend if cache is None else CachedBackend(backend, cache)
