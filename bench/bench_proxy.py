"""The proxy, `bestofn serve`, behind a loopback OpenAI-compatible server with a fixed latency per call.

(1) Overhead (the default): the proxy against calling the pipeline directly, at equal n.

    python bench/bench_proxy.py [--n 4] [--latency 0.05] [--requests 200] [--concurrency 1 8]

Four processes: the loopback server (tests/loopback.py), the proxy (the real `bestofn serve` command,
uvicorn), a worker calling `aselect(...)` directly, and this one, which sends the same requests through the
proxy with the official openai SDK (AsyncOpenAI). Both paths run AT THE SAME TIME, each with the same number
of requests in flight, so both see the same machine load. Generator and judges are the loopback server
(`vllm:loopback`), the cache is off, every request samples n candidates and judges them with the default
panel (4 judges). Prints latency percentiles of both paths and what the proxy adds at p50 and p99.

(2) Under load (`--load`): the proxy with n=8 and the compact panel (1 generation request + 8 judge requests per
selection), `--clients` (64) concurrent OpenAI clients (one AsyncOpenAI each, one request at a time, back to
back) for `--duration` seconds (60) or `--max-requests` requests, whichever ends first, then the same with
stream=True. Loopback only: the proxy binds 127.0.0.1, its upstream is the loopback server.

    python bench/bench_proxy.py --load [--clients 64] [--duration 60] [--max-requests 20000] [--latency 0.1]

Prints requests/s, p50/p99 latency (to the last chunk when streaming) against the floor, errors (goal 0), and
the proxy's resident memory (RSS) at the start, every tenth of the run and at the end (goal: flat). The floor
of one request is two rounds (generation, then the judges) x the latency; with every client busy the proxy's
cap on upstream requests in flight (64, BESTOFN_CONCURRENCY) bounds the rate at cap / (9 x latency).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
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


async def run_direct(n: int, panel: str, upstream: str, requests: int, warmup: int, concurrency: int) -> list[float]:
    gate = asyncio.Semaphore(concurrency)
    out: list[float] = []

    async def one(record: bool) -> None:
        async with gate:
            started = time.perf_counter()
            await aselect(ASK, n=n, model="vllm:loopback", judge_model="vllm:loopback", base_url=upstream,
                          panel=panel, cache=False, seed=int(started * 1e6) % 2**31)
            if record:
                out.append(time.perf_counter() - started)

    await asyncio.gather(*(one(False) for _ in range(warmup)))
    await asyncio.gather(*(one(True) for _ in range(requests)))
    return out


def direct_worker(n: int, panel: str, upstream: str, requests: int, warmup: int, concurrency: int) -> list[float]:
    """The direct path in its own process, as the proxy's pipeline is in its own: neither shares a loop."""
    return asyncio.run(run_direct(n, panel, upstream, requests, warmup, concurrency))


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
            pool, direct_worker, args.n, args.panel, upstream, args.requests, args.warmup, concurrency)
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


def rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def load(proxy: str, pid: int, args: argparse.Namespace, stream: bool) -> dict:
    """`clients` OpenAI clients sending back to back until the time or the request budget runs out."""
    clients = [openai.AsyncOpenAI(base_url=proxy, api_key="x", max_retries=0, timeout=120) for _ in range(args.clients)]
    latencies: list[float] = []
    errors: list[str] = []
    budget = iter(range(args.max_requests))
    rss = [(0.0, rss_mb(pid))]
    started = time.perf_counter()
    deadline = started + args.duration

    async def client_loop(client: openai.AsyncOpenAI, k: int) -> None:
        for i in budget:
            if time.perf_counter() >= deadline:
                return
            t0 = time.perf_counter()
            try:
                if stream:
                    chunks = 0
                    async for _chunk in await client.chat.completions.create(
                        model="loopback", messages=ASK, stream=True, seed=k * 1_000_003 + i
                    ):
                        chunks += 1
                    assert chunks, "an empty stream"
                else:
                    reply = await client.chat.completions.create(model="loopback", messages=ASK, seed=k * 1_000_003 + i)
                    assert reply.choices and reply.choices[0].message.content, "an empty reply"
            except Exception as exc:  # counted, never hidden
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
                continue
            latencies.append(time.perf_counter() - t0)

    async def sample_rss() -> None:
        while True:
            await asyncio.sleep(args.duration / 10)
            rss.append((time.perf_counter() - started, rss_mb(pid)))

    sampler = asyncio.ensure_future(sample_rss())
    await asyncio.gather(*(client_loop(c, k) for k, c in enumerate(clients)))
    elapsed = time.perf_counter() - started
    sampler.cancel()
    rss.append((elapsed, rss_mb(pid)))
    for client in clients:
        await client.close()
    return {"latencies": latencies, "errors": errors, "elapsed": elapsed, "rss": rss}


def report_load(result: dict, args: argparse.Namespace, stream: bool) -> None:
    lat, errors, elapsed = result["latencies"], result["errors"], result["elapsed"]
    floor = 2 * args.latency
    ceiling = 64 / ((1 + args.n) * args.latency)
    print(f"\n{'stream=True' if stream else 'stream=False'}: {args.clients} clients, {elapsed:.1f} s, "
          f"{len(lat)} requests answered, {len(errors)} errors; load average {os.getloadavg()[0]:.1f}")
    if lat:
        print(f"  {len(lat) / elapsed:.1f} requests/s (the cap on upstream requests in flight allows {ceiling:.0f}/s)")
        print(f"  latency p50 {pct(lat, 50):.3f} s ({pct(lat, 50) / floor:.1f}x the floor of {floor:.1f} s), "
              f"p99 {pct(lat, 99):.3f} s ({pct(lat, 99) / floor:.1f}x), max {max(lat):.3f} s")
    for kind, count in collections.Counter(errors).most_common(5):
        print(f"  error x{count}: {kind}")
    rss = result["rss"]
    print(f"  proxy RSS: {rss[0][1]:.1f} MB at the start, {rss[-1][1]:.1f} MB at the end "
          f"({rss[-1][1] - rss[0][1]:+.1f} MB); along the way: " + ", ".join(f"{mb:.0f}" for _, mb in rss))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--load", action="store_true", help="the load test (2) instead of the overhead comparison")
    parser.add_argument("--n", type=int, default=None, help="candidates per request (default 4; --load: 8)")
    parser.add_argument("--panel", default=None, help="the proxy's panel (default: default; --load: compact)")
    parser.add_argument("--latency", type=float, default=None,
                        help="seconds the loopback server waits per call (default 0.05; --load: 0.1)")
    parser.add_argument("--requests", type=int, default=200, help="measured requests per path and concurrency")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--clients", type=int, default=64, help="--load: concurrent OpenAI clients")
    parser.add_argument("--duration", type=float, default=60.0, help="--load: seconds per phase")
    parser.add_argument("--max-requests", type=int, default=20_000, help="--load: at most this many per phase")
    parser.add_argument("--no-stream", action="store_true", help="--load: skip the stream=True phase")
    args = parser.parse_args()
    args.n = args.n or (8 if args.load else 4)
    args.panel = args.panel or ("compact" if args.load else "default")
    args.latency = args.latency if args.latency is not None else (0.1 if args.load else 0.05)

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    loop_proc = start([sys.executable, "-m", "tests.loopback", "--port", "0", "--latency", str(args.latency)], env)
    proxy_proc = None
    try:
        line = loop_proc.stdout.readline().strip()
        assert line.startswith("LISTENING "), f"loopback server: {line!r}"
        upstream = line.split()[1]
        assert upstream.startswith("http://127.0.0.1:"), upstream
        port = free_port()
        proxy_proc = subprocess.Popen(
            [sys.executable, "-m", "bestofn", "serve", "--host", "127.0.0.1", "--port", str(port),
             "--model", "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", upstream, "-n", str(args.n),
             "--panel", args.panel, "--no-cache", "--log-level", "warning"],
            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        proxy = f"http://127.0.0.1:{port}/v1"
        if args.load:
            print(f"bestofn proxy under load: n={args.n}, panel {args.panel}, {1 + args.n} upstream requests per "
                  f"selection, upstream latency {args.latency * 1000:.0f} ms, cache off; {os.cpu_count()} CPUs, "
                  f"load average {os.getloadavg()[0]:.1f}")
            warm = argparse.Namespace(**{**vars(args), "clients": 4, "duration": 3.0, "max_requests": 8})
            asyncio.run(load(proxy, proxy_proc.pid, warm, stream=False))  # imports, clients, connections
            for stream in (False,) if args.no_stream else (False, True):
                report_load(asyncio.run(load(proxy, proxy_proc.pid, args, stream)), args, stream)
        else:
            print(f"bestofn proxy overhead: n={args.n}, panel {args.panel}, upstream latency "
                  f"{args.latency * 1000:.0f} ms each, cache off; {os.cpu_count()} CPUs, "
                  f"load average {os.getloadavg()[0]:.1f}")
            for concurrency in args.concurrency:
                direct, proxied = asyncio.run(measure(args, upstream, proxy, concurrency))
                report(concurrency, direct, proxied)
        print(f"\nload average at the end: {os.getloadavg()[0]:.1f}")
    finally:
        for proc in (proxy_proc, loop_proc):
            if proc is not None:
                proc.terminate()
                proc.wait(10)


if __name__ == "__main__":
    main()
