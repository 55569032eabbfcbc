"""The call cache: keys, hits counted by the Meter, concurrency across processes, size limit, corruption."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import warnings

import pytest

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.backends.cache import Cache, CachedBackend, call_key, open_cache, resolve_cache
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.records import Message, Usage

MSGS = [Message(role="user", content="Why is the sky blue?")]


class CountingBackend(Backend):
    """A real Backend whose answers depend on (messages, seed + i), like the local model's; counts calls."""

    def __init__(self, spec: str = "counting"):
        self.spec = spec
        self.calls = 0

    async def sample(self, messages, params):
        self.calls += 1
        return [
            Completion(text=f"{messages[-1].content}|{params.seed + i}|{params.temperature}", finish_reason="stop",
                       usage=Usage(prompt_tokens=5, completion_tokens=3))
            for i in range(params.n)
        ]


async def test_hit_returns_the_same_completions_and_the_meter_counts_hits(tmp_path):
    inner, meter = CountingBackend(), Meter()
    backend = MeteredBackend(CachedBackend(inner, Cache(tmp_path)), meter)
    params = SamplingParams(n=3, seed=7, temperature=0.8, max_tokens=20)
    first = await backend.sample(MSGS, params)
    second = await backend.sample(MSGS, params)
    assert [c.text for c in first] == [c.text for c in second]
    assert not any(c.cached for c in first) and all(c.cached for c in second)
    assert inner.calls == 1
    assert (meter.spend.calls, meter.spend.cache_hits) == (3, 3)
    assert meter.spend.prompt_tokens == 15  # hits add no tokens


async def test_key_covers_every_parameter_and_the_sample_index(tmp_path):
    inner = CountingBackend()
    backend = CachedBackend(inner, Cache(tmp_path))
    base = SamplingParams(n=2, seed=0, temperature=0.8, max_tokens=20)
    await backend.sample(MSGS, base)
    variants = [
        base.model_copy(update={"seed": 1}),
        base.model_copy(update={"temperature": 0.5}),
        base.model_copy(update={"max_tokens": 21}),
        base.model_copy(update={"json_schema": {"type": "object"}}),
        base.model_copy(update={"top_logprobs": 2}),
    ]
    for params in variants:
        calls = inner.calls
        await backend.sample(MSGS, params)
        assert inner.calls == calls + 1, params
    calls = inner.calls
    await backend.sample([Message(role="user", content="Other")], base)
    assert inner.calls == calls + 1
    # n is not in the key: the first two samples of n=4 are the two samples of n=2, so only a call for the rest
    assert call_key(inner, MSGS, base, 0) == call_key(inner, MSGS, base.model_copy(update={"n": 4}), 0)
    four = await backend.sample(MSGS, base.model_copy(update={"n": 4}))
    assert [c.cached for c in four] == [True, True, False, False]
    assert (await backend.sample(MSGS, base.model_copy(update={"n": 1})))[0].cached
    # another backend spec never shares entries
    other = CachedBackend(CountingBackend("counting-2"), backend.cache)
    assert not (await other.sample(MSGS, base))[0].cached


async def test_no_cache_and_uncacheable_backends(tmp_path):
    assert resolve_cache(False) is None
    assert resolve_cache(None) is open_cache()  # BESTOFN_CACHE_DIR (per test, see conftest)
    assert str(open_cache().dir).startswith(os.environ["BESTOFN_CACHE_DIR"].rstrip("/"))
    inner = CountingBackend()
    inner.cacheable = False
    backend = CachedBackend(inner, Cache(tmp_path))
    await backend.sample(MSGS, SamplingParams())
    await backend.sample(MSGS, SamplingParams())
    assert inner.calls == 2


def _writer(directory: str, worker: int, count: int) -> None:
    cache = Cache(directory)
    for i in range(count):
        cache.put_many({f"w{worker}-{i}": f"value {worker} {i}"})
        assert cache.get_many([f"w{worker}-{i}"]) == {f"w{worker}-{i}": f"value {worker} {i}"}


def test_many_processes_share_one_cache(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, 150)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    cache = Cache(tmp_path)
    assert len(cache) == 600
    assert cache.get_many(["w3-149", "w0-0"]) == {"w3-149": "value 3 149", "w0-0": "value 0 0"}


def test_size_limit_evicts_least_recently_used(tmp_path):
    cache = Cache(tmp_path, size_limit=400_000)
    cache.put_many({"keep": "k" * 1000})
    for i in range(600):
        cache.put_many({f"k{i}": "x" * 2000})
        if i % 50 == 0:
            cache.get_many(["keep"])  # recently used: survives
    cache.evict()
    assert cache.volume() <= 400_000
    assert cache.stats.evicted > 0
    assert len(cache) < 601
    assert cache.get_many(["keep"]) == {"keep": "k" * 1000}
    assert cache.get_many(["k0"]) == {}  # the oldest went first


@pytest.mark.parametrize("damage", ["truncate", "garbage", "zero"])
def test_a_corrupt_cache_file_is_rebuilt_not_crashed_on(tmp_path, damage):
    cache = Cache(tmp_path)
    cache.put_many({f"k{i}": "v" * 3000 for i in range(500)})
    cache.close()
    path = tmp_path / "calls.sqlite"
    for suffix in ("-wal", "-shm"):
        assert not (tmp_path / f"calls.sqlite{suffix}").exists()  # checkpointed on close
    size = path.stat().st_size
    if damage == "truncate":
        with open(path, "r+b") as fh:
            fh.truncate(size // 3)
    elif damage == "garbage":
        path.write_bytes(os.urandom(size))
    else:
        path.write_bytes(b"")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        again = Cache(tmp_path)
        found = again.get_many([f"k{i}" for i in range(500)])
    if damage != "zero":  # an empty file is a valid empty database
        assert again.stats.rebuilt == 1
    assert found == {} or all(v == "v" * 3000 for v in found.values())
    again.put_many({"new": "entry"})
    assert again.get_many(["new"]) == {"new": "entry"}
    assert sqlite3.connect(path).execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_damage_found_after_opening_is_rebuilt_too(tmp_path):
    cache = Cache(tmp_path)
    cache.put_many({f"k{i}": "v" * 3000 for i in range(500)})
    cache.close()
    again = Cache(tmp_path)  # opened while intact
    path = tmp_path / "calls.sqlite"
    with open(path, "r+b") as fh:  # then damaged underneath it: overwrite the pages in the middle
        fh.seek(path.stat().st_size // 2)
        fh.write(os.urandom(200_000))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        assert again.get_many([f"k{i}" for i in range(500)]) == {}
    assert again.stats.rebuilt == 1
    again.put_many({"new": "entry"})
    assert again.get_many(["new"]) == {"new": "entry"}


async def test_the_pipeline_uses_the_shared_cache_unless_told_not_to(loopback):
    from bestofn.pipeline.select import aselect

    options = dict(n=2, model="vllm:loopback", judge_model="vllm:loopback", base_url=loopback.base_url)
    first = await aselect("Why is the sky blue?", **options)
    calls = loopback.count
    assert first.cost.calls > 0 and first.cost.cache_hits == 0 and calls > 0
    again = await aselect("Why is the sky blue?", **options)  # generator and judges answered from the cache
    assert loopback.count == calls and again.cost.calls == 0 and again.cost.cache_hits == first.cost.calls
    assert [c.text for c in again.candidates] == [c.text for c in first.candidates]
    assert again.scores == first.scores
    await aselect("Why is the sky blue?", **options, cache=False)
    assert loopback.count == 2 * calls
