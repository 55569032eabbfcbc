"""Best-of-16 with the four-judge default panel (16 candidates x 4 judges = 64 judge calls) against a loopback
OpenAI-compatible server that answers every request after a fixed 100 ms (tests/loopback.py, run in its own
process, listen backlog 512, Nagle off). Measured in the same run:

  (a) bestofn end to end: `aselect(n=16, model="vllm:bench", judge_model="vllm:bench")`, no cache
  (a') the same with the call cache on: an existing, empty cache file per run (opened before the clock starts, as
       after a user's first run), so every call is a miss and is stored
  (b) the raw SDK at full concurrency: one shared AsyncOpenAI, one generation call with n=16, then the 64
      judge calls (the same rendered prompts, the same JSON schema) at once
  (c) the floor: one generation round plus one judge round = 0.2 s
  (s) the usual sequential recipe: 16 generation calls one by one, then 64 judge calls one by one

and prints a/b (goal <= 1.10), a/c, b/c, s/c, and the Python CPU time per judged candidate for (a) and (b).
The machine may be shared: each repeat runs every variant once (in a rotating order), and a/b is also given as
the median of the per-repeat ratios, which a load that changes between repeats does not skew.

    python bench/bench_backends.py [--repeats 16] [--latency 0.1] [--no-sequential]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from openai import AsyncOpenAI  # noqa: E402

from bestofn.backends._openai_wire import json_schema_format  # noqa: E402
from bestofn.backends.cache import open_cache  # noqa: E402
from bestofn.pipeline.generate import generate  # noqa: E402
from bestofn.judging import JudgeInput, build_judges  # noqa: E402
from bestofn.judging.structured import json_schema  # noqa: E402
from bestofn.config.panel import load_panel  # noqa: E402
from bestofn.records import Message  # noqa: E402
from bestofn.pipeline.select import aselect  # noqa: E402

N = 16
PROMPT = "Why is the sky blue? Answer in two sentences."
MODEL = "bench"


def start_server(latency: float) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.loopback", "--latency", str(latency)],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("LISTENING "):
        proc.kill()
        raise RuntimeError(f"loopback server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def judge_requests(base_url: str) -> list[tuple[list[Message], dict]]:
    """The 64 judge prompts bestofn would send (rendered by the real judges), computed ahead of time."""
    from bestofn.backends import load_backend

    backend = load_backend(f"vllm:{MODEL}", base_url)
    panel = load_panel("default")
    judges = build_judges(panel, lambda cfg: backend, max_tokens=384)
    messages = [Message(role="user", content=PROMPT)]
    candidates = asyncio.run(generate(backend, messages, n=N, temperature=0.8, max_tokens=512, seed=0))
    item = JudgeInput(prompt=messages, seed=0)
    out = []
    for judge in judges:
        for c in candidates:
            out.append((judge.prompt_for(item, c), json_schema_format(json_schema(judge.output_model))))  # type: ignore[attr-defined]
    return out


async def raw_loop(client: AsyncOpenAI, judged: list[tuple[list[Message], dict]]) -> None:
    gen = await client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], n=N, temperature=0.8, max_tokens=512, seed=0
    )
    assert len(gen.choices) == N
    replies = await asyncio.gather(*(
        client.chat.completions.create(
            model=MODEL, messages=[m.model_dump() for m in msgs], temperature=0.0, max_tokens=384, seed=0,
            response_format=fmt,
        )
        for msgs, fmt in judged
    ))
    assert len(replies) == len(judged)


async def sequential_loop(client: AsyncOpenAI, judged: list[tuple[list[Message], dict]]) -> None:
    for i in range(N):
        await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], temperature=0.8, max_tokens=512, seed=i
        )
    for msgs, fmt in judged:
        await client.chat.completions.create(
            model=MODEL, messages=[m.model_dump() for m in msgs], temperature=0.0, max_tokens=384, seed=0,
            response_format=fmt,
        )


async def measure(runs: dict, repeats: int) -> dict[str, tuple[list[float], list[float]]]:
    """Interleave the variants (a, a', b, then a', b, a, ...) so that a busy machine slows them alike."""
    out: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in runs}
    for name, run in runs.items():
        await run(-1)  # warm-up: connections, imports, templates
    order = list(runs.items())
    for r in range(repeats):
        for name, run in order[r % len(order):] + order[: r % len(order)]:  # no position advantage
            w0, c0 = time.perf_counter(), time.process_time()
            await run(r)
            out[name][0].append(time.perf_counter() - w0)
            out[name][1].append(time.process_time() - c0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=16)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--no-sequential", action="store_true")
    args = parser.parse_args()

    load = os.getloadavg()
    cache_root = tempfile.TemporaryDirectory()
    caches = [open_cache(Path(cache_root.name) / str(r)) for r in range(args.repeats)]
    proc, base_url = start_server(args.latency)
    try:
        judged = judge_requests(base_url)
        assert len(judged) == 4 * N

        async def bestofn_run(r: int, cache: object = False) -> None:
            sel = await aselect(PROMPT, n=N, model=f"vllm:{MODEL}", judge_model=f"vllm:{MODEL}", base_url=base_url,
                                seed=r + 1, cache=cache)
            assert len(sel.verdicts) == 4 * len({c.id for c in sel.candidates})
            assert all(v.status == "ok" for v in sel.verdicts), {v.reason for v in sel.verdicts}

        async def bestofn_cached(r: int) -> None:
            await bestofn_run(r, cache=caches[r])

        async def all_runs() -> tuple[dict, list[float] | None]:
            client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
            runs = {"a": bestofn_run, "a'": bestofn_cached, "b": lambda r: raw_loop(client, judged)}
            results = await measure(runs, args.repeats)
            seq = None
            if not args.no_sequential:
                w0 = time.perf_counter()
                await sequential_loop(client, judged)
                seq = [time.perf_counter() - w0]
            await client.close()
            return results, seq

        results, s = asyncio.run(all_runs())
        (a, a_cpu), (a2, a2_cpu), (b, b_cpu) = results["a"], results["a'"], results["b"]
        floor = 2 * args.latency
    finally:
        for cache in caches:
            cache.close()
        cache_root.cleanup()
        proc.terminate()
        proc.wait(5)

    med = statistics.median
    per_repeat = med([x / y for x, y in zip(a, b)])
    per_repeat_cached = med([x / y for x, y in zip(a2, b)])
    print(f"best-of-{N}, 4 judges ({4 * N} judge calls), server latency {args.latency * 1000:.0f} ms, "
          f"{args.repeats} repeats (median), {os.cpu_count()} cores, load average {load[0]:.1f} at the start, "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"(a)  bestofn end to end, no cache : {med(a):.3f} s   (min {min(a):.3f})")
    print(f"(a') bestofn, cache on (all miss) : {med(a2):.3f} s   (min {min(a2):.3f})")
    print(f"(b)  raw AsyncOpenAI, full conc.  : {med(b):.3f} s   (min {min(b):.3f})")
    print(f"(c)  floor                        : {floor:.3f} s")
    if s is not None:
        print(f"(s)  sequential recipe            : {s[0]:.3f} s")
    print(f"a/b = {med(a) / med(b):.3f}   a'/b = {med(a2) / med(b):.3f}   per-repeat median: a/b = {per_repeat:.3f}   "
          f"a'/b = {per_repeat_cached:.3f}   (goal: a/b <= 1.10)")
    print(f"a/c = {med(a) / floor:.2f}   b/c = {med(b) / floor:.2f}" + (f"   s/c = {s[0] / floor:.1f}" if s else ""))
    print(f"Python CPU per judged candidate: bestofn {med(a_cpu) / N * 1000:.1f} ms "
          f"(cache on {med(a2_cpu) / N * 1000:.1f} ms), raw SDK {med(b_cpu) / N * 1000:.1f} ms")

if __name__ == "__main__":
    main()
