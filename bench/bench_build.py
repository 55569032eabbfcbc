"""`bestofn build` throughput.

(1) Local model: pairs (and prompts, calls) per minute for a small build on the embedded SmolLM2-135M.
(2) Loopback: an OpenAI-compatible server (tests/loopback.py, in its own process, so its CPU is not the
    client's) answers every request after a fixed latency (20 ms). With the same cap on requests in flight
    (C, the vllm backend's concurrency limit for the build; C workers for the raw loop) compare
      (a) the build's calls per second (requests counted at the server / the build's wall time): generation,
          judging with the default panel's four judges, aggregation, pairs, journal commits and JSONL rows,
          through the call cache (a fresh, empty cache per run: every call a miss) and with --no-cache;
      (b) a plain asyncio loop of raw SDK calls (one AsyncOpenAI, C workers) sending the same number of
          judge-shaped requests (a rendered rubric prompt, the same JSON schema) with `chat.completions.create`;
      (c) the same loop posting the same JSON body with the SDK's `client.post`, as bestofn's backends do
          (without create's typed transform of the params, 0.3 ms of CPU a call here);
    and print a/b (goal >= 0.9) and a/c (bestofn's own cost alone).

    python bench/bench_build.py [--latency 0.02] [--concurrency 16] [--prompts 64] [-n 4] [--repeats 3]
                                [--local-prompts 3] [--skip-local]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server_process import ServerProcess  # noqa: E402  (bench/server_process.py)

from bestofn.apps.build import Columns, abuild, build  # noqa: E402
from bestofn.backends.cache import Cache  # noqa: E402

MODEL = "bench"


def _serve(latency: float, conn) -> None:
    from tests.loopback import LoopbackServer

    srv = LoopbackServer(latency=latency, flavour="vllm").start()
    conn.send(srv.base_url)
    while True:
        msg = conn.recv()
        if msg == "stats":
            conn.send((srv.count, srv.max_in_flight))
        elif msg == "reset":
            srv.reset()
            srv.max_in_flight = 0
            conn.send(True)
        else:
            srv.stop()
            conn.send(True)
            return


def prompts_file(folder: Path, count: int) -> Path:
    src = REPO.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
    src = Path(os.environ.get("BESTOFN_DATA_DIR", src.parent.parent)) / "ifeval" / "input_data.jsonl"
    with open(src, encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(count)]
    path = folder / f"prompts-{count}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def judge_shaped_request(base_url: str) -> tuple[list[dict], dict]:
    """One real rendered rubric prompt and its JSON schema, as the build's judges send them."""
    from bestofn.backends._openai_wire import json_schema_format
    from bestofn.judging.structured import json_schema
    from bestofn.judging import JudgeInput, build_judges
    from bestofn.config.panel import load_panel
    from bestofn.records import Candidate, Message

    judge = build_judges(load_panel("default"), lambda cfg: None, max_tokens=384)[0]  # type: ignore[arg-type]
    item = JudgeInput(prompt=[Message(role="user", content="Write a haiku about the sea, in lowercase.")], seed=0)
    cand = Candidate(id="x", index=0, text="salt wind on the waves / gulls argue over the tide / the sea keeps its time",
                     model=MODEL)
    messages = [m.model_dump() for m in judge.prompt_for(item, cand)]
    return messages, json_schema_format(json_schema(judge.output_model))  # type: ignore[attr-defined]


async def raw_loop(base_url: str, total: int, concurrency: int, messages: list[dict], fmt: dict,
                   post: bool = False) -> float:
    """C workers sending `total` requests with `chat.completions.create`, or (post) with the SDK's `client.post`
    of the same JSON body, which skips create's typed transform of the params, as bestofn's backends do."""
    from openai import AsyncOpenAI
    from openai.types.chat import ChatCompletion

    client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)
    left = iter(range(total))

    async def worker() -> None:
        for i in left:
            if post:
                body = {"model": MODEL, "messages": messages, "response_format": fmt, "max_tokens": 384,
                        "temperature": 0.0, "seed": i}
                await client.post("/chat/completions", body=body, cast_to=ChatCompletion)
            else:
                await client.chat.completions.create(model=MODEL, messages=messages, response_format=fmt,
                                                     max_tokens=384, temperature=0.0, seed=i)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await client.close()
    return elapsed


def loopback_bench(args: argparse.Namespace) -> None:
    os.environ["BESTOFN_CONCURRENCY"] = str(args.concurrency)  # the vllm backend's cap on requests in flight
    os.environ["BESTOFN_SERVER_FLAVOUR"] = "vllm"
    server = ServerProcess(_serve, args.latency)
    tmp = Path(tempfile.mkdtemp(prefix="bench-build-"))
    prompts = prompts_file(tmp, args.prompts)
    options = dict(model=f"vllm:{MODEL}", judge_model=f"vllm:{MODEL}", base_url=server.base_url, n=args.n,
                   max_tokens=64, concurrency=args.concurrency, columns=Columns(id="key"), progress=False)
    messages, fmt = judge_shaped_request(server.base_url)
    print(f"loopback: latency {args.latency * 1000:.0f} ms, {args.prompts} prompts x (1 generation request with "
          f"n={args.n} + {4 * args.n} judge requests), at most {args.concurrency} requests in flight")
    results: dict[str, list[float]] = {"build (cache)": [], "build (--no-cache)": [], "raw SDK loop": [],
                                       "raw SDK post loop": []}
    inflight: dict[str, int] = {}
    cpu_ms: dict[str, list[float]] = {k: [] for k in results}
    total = args.prompts * (1 + 4 * args.n)

    def run_build(label: str, rep: int) -> None:
        server.ask("reset")
        cache = Cache(tmp / f"cache-{rep}") if "no-cache" not in label else False  # fresh: every call a miss
        started, cpu = time.perf_counter(), time.process_time()
        summary = asyncio.run(abuild(prompts, tmp / f"out-{rep}-{cache is False}.jsonl", **{**options, "cache": cache}))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
        calls, inflight[label] = server.ask("stats")
        assert summary.done_now == args.prompts and summary.failed == 0 and calls == total, (summary, calls)
        results[label].append(calls / elapsed)
        cpu_ms[label].append(cpu / calls * 1000)

    def run_raw(label: str, rep: int) -> None:
        server.ask("reset")
        cpu = time.process_time()
        elapsed = asyncio.run(raw_loop(server.base_url, total, args.concurrency, messages, fmt, post="post" in label))
        cpu = time.process_time() - cpu
        calls, inflight[label] = server.ask("stats")
        results[label].append(calls / elapsed)
        cpu_ms[label].append(cpu / calls * 1000)

    runs = [("build (cache)", run_build), ("build (--no-cache)", run_build), ("raw SDK loop", run_raw),
            ("raw SDK post loop", run_raw)]
    try:
        asyncio.run(abuild(prompts, tmp / "warm.jsonl", **{**options, "cache": False}))  # imports, connections
        run_raw("raw SDK loop", -1)
        results["raw SDK loop"].clear()
        cpu_ms["raw SDK loop"].clear()
        for rep in range(args.repeats):
            for label, fn in runs[rep % len(runs):] + runs[: rep % len(runs)]:  # rotate: no position advantage
                fn(label, rep)
    finally:
        server.close()
    # The machine may be shared: each repeat's build is compared with the raw loop of the same repeat.
    ratios = {label: [b / r for b, r in zip(results[label], results["raw SDK loop"])] for label in results}
    ideal = args.concurrency / args.latency
    for label, rates in results.items():
        print(f"  {label:20s} {statistics.median(rates):8.1f} calls/s (median of {len(rates)}; runs "
              f"{', '.join(f'{r:.0f}' for r in rates)})  peak in flight {inflight[label]:3d}  client CPU "
              f"{statistics.median(cpu_ms[label]):.2f} ms/call  vs raw {statistics.median(ratios[label]):5.2f}x")
    print(f"  ceiling at {args.concurrency} in flight and {args.latency * 1000:.0f} ms: {ideal:.0f} calls/s")
    print(f"  build/raw (goal >= 0.9; median of per-repeat ratios): {statistics.median(ratios['build (cache)']):.2f} "
          f"with the cache, {statistics.median(ratios['build (--no-cache)']):.2f} with --no-cache")
    # bestofn posts its bodies without create's typed transform (bestofn.backends._openai_wire): against a raw
    # loop that does the same, the ratio is bestofn's own cost alone
    post = {label: [b / r for b, r in zip(results[label], results["raw SDK post loop"])] for label in results}
    print(f"  build/raw post loop (bestofn's own cost, no goal): {statistics.median(post['build (cache)']):.2f} "
          f"with the cache, {statistics.median(post['build (--no-cache)']):.2f} with --no-cache")


def local_bench(args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-build-local-"))
    prompts = prompts_file(tmp, args.local_prompts)
    started = time.perf_counter()
    summary = build(prompts, tmp / "out.jsonl", model="local", panel=args.local_panel, n=args.local_n,
                    max_tokens=args.local_max_tokens, concurrency=1, columns=Columns(id="key"), cache=False,
                    progress=False)
    minutes = (time.perf_counter() - started) / 60
    print(f"local model: {summary.done_now} prompts, n={args.local_n}, panel {args.local_panel}, "
          f"max_tokens {args.local_max_tokens}: {summary.pairs} pairs, {summary.cost.calls} calls in "
          f"{minutes * 60:.1f} s")
    print(f"  {summary.pairs / minutes:.2f} pairs/min, {summary.done_now / minutes:.2f} prompts/min, "
          f"{summary.cost.calls / minutes:.1f} calls/min; skipped: {summary.skipped or 'none'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--local-prompts", type=int, default=3)
    parser.add_argument("--local-n", type=int, default=2)
    parser.add_argument("--local-panel", default="compact")
    parser.add_argument("--local-max-tokens", type=int, default=64)
    parser.add_argument("--skip-local", action="store_true")
    parser.add_argument("--skip-loopback", action="store_true")
    args = parser.parse_args()
    if not args.skip_loopback:
        loopback_bench(args)
    if not args.skip_local:
        local_bench(args)


if __name__ == "__main__":
    main()
