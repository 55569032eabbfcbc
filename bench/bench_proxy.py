"""Proxy overhead: `bestofn serve` against calling the pipeline directly, at equal n, behind a loopback
OpenAI-compatible server with a fixed latency per call.

    python bench/bench_proxy.py [--n 4] [--latency 0.05] [--requests 200] [--concurrency 1 8]

Four processes: the loopback server (tests/loopback.py), the proxy (the real `bestofn serve` command,
uvicorn), a worker calling `aselect(...)` directly, and this one, which sends the same requests through the
proxy with the official openai SDK (AsyncOpenAI). Both paths run AT THE SAME TIME, each with the same number
of requests in flight, so both see the same machine load. Generator and judges are the loopback server
(`vllm:loopback`), the cache is off, every request samples n candidates and judges them with the default
panel (4 judges). Prints latency percentiles of both paths and what the proxy adds at p50 and p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import httpx2  # noqa: E402
import openai  # noqa: E402

from bestofn import aselect  # noqa: E402

ASK = [{"role": "user", "content": "Why is the sky blue?"}]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def start(cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


async def run_direct(n: int, upstream: str, requests: int, warmup: int, concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    out: list[float] = []

    async def one(record: bool) -> None:
        async with gate:
            started = time.perf_counter()
            await aselect(ASK, n=n, model="vllm:loopback", judge_model="vllm:loopback", base_url=upstream,
                          cache=False, seed=int(started * 1e6) % 2**31)
            if record:
                out.append(time.perf_counter() - started)

    await asyncio.gather(*(one(False) for _ in range(warmup)))
    await asyncio.gather(*(one(True) for _ in range(requests)))
    return out


def direct_worker(n: int, upstream: str, requests: int, warmup: int, concurrency: int) -> list[float]:
    """The direct path in its own process, as the proxy's pipeline is in its own: neither shares a loop."""
    return asyncio.run(run_direct(n, upstream, requests, warmup, concurrency))


async def run_proxied(proxy: str, requests: int, warmup: int, concurrency: int) -> list[float]:
    client = openai.AsyncOpenAI(base_url=proxy, api_key="x", max_retries=0, timeout=300)
    gate = asyncio.Semaphore(concurrency)
    out: list[float] = []

    async def one(record: bool) -> None:
        async with gate:
            started = time.perf_counter()
            await client.chat.completions.create(model="loopback", messages=ASK)
            if record:
                out.append(time.perf_counter() - started)

    await asyncio.gather(*(one(False) for _ in range(warmup)))
    await asyncio.gather(*(one(True) for _ in range(requests)))
    await client.close()
    return out


async def measure(args: argparse.Namespace, upstream: str, proxy: str, concurrency: int) -> tuple[list[float], list[float]]:
    """Both paths at once, each with `concurrency` requests in flight, so both see the same machine load."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        direct = asyncio.get_running_loop().run_in_executor(
            pool, direct_worker, args.n, upstream, args.requests, args.warmup, concurrency)
        proxied = await run_proxied(proxy, args.requests, args.warmup, concurrency)
        return await direct, proxied


def report(concurrency: int, direct: list[float], proxied: list[float]) -> None:
    ms = 1000.0
    print(f"\nconcurrency {concurrency}: {len(direct)} requests each way")
    print(f"  {'':18}{'p50 ms':>10}{'p90 ms':>10}{'p99 ms':>10}{'mean ms':>10}")
    for name, values in (("direct aselect", direct), ("through the proxy", proxied)):
        print(f"  {name:18}{pct(values, 50) * ms:10.1f}{pct(values, 90) * ms:10.1f}{pct(values, 99) * ms:10.1f}"
              f"{statistics.fmean(values) * ms:10.1f}")
    add50 = (pct(proxied, 50) - pct(direct, 50)) * ms
    add99 = (pct(proxied, 99) - pct(direct, 99)) * ms
    print(f"  added by the proxy: p50 {add50:+.1f} ms ({pct(proxied, 50) / pct(direct, 50):.2f}x), "
          f"p99 {add99:+.1f} ms ({pct(proxied, 99) / pct(direct, 99):.2f}x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=4, help="candidates per request (both paths)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds the loopback server waits per call")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per path and concurrency")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    loop_proc = start([sys.executable, "-m", "tests.loopback", "--port", "0", "--latency", str(args.latency)], env)
    proxy_proc = None
    try:
        line = loop_proc.stdout.readline().strip()
        assert line.startswith("LISTENING "), f"loopback server: {line!r}"
        upstream = line.split()[1]
        port = free_port()
        proxy_proc = subprocess.Popen(
            [sys.executable, "-m", "bestofn", "serve", "--port", str(port), "--model", "vllm:loopback",
             "--judge-model", "vllm:loopback", "--base-url", upstream, "-n", str(args.n), "--no-cache",
             "--log-level", "warning"], cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx2.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                    break
            except httpx2.TransportError:
                pass
            if time.monotonic() > deadline or proxy_proc.poll() is not None:
                raise SystemExit("the proxy did not start")
            time.sleep(0.1)
        print(f"bestofn proxy overhead: n={args.n}, default panel (4 judges), {1 + 4 * args.n} upstream requests "
              f"per selection, upstream latency {args.latency * 1000:.0f} ms each, cache off; "
              f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
        for concurrency in args.concurrency:
            direct, proxied = asyncio.run(measure(args, upstream, f"http://127.0.0.1:{port}/v1", concurrency))
            report(concurrency, direct, proxied)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for proc in (proxy_proc, loop_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
