"""`bestofn build` in one process against `bestofn build --ray`, side by side, on this machine.

The loopback server (tests/loopback.py, in its own process) answers every request after a fixed latency (100 ms)
as a vLLM server would. The same prompts (n answers each, the default panel: one generation request with n
choices + 4 judges x n requests) are built
  (a) in one process with --concurrency C (C prompts in flight), and
  (b) on a local Ray (2 CPUs) with A actors x C/A prompts in flight,
each into a fresh output, without the call cache (every call reaches the server). Each backend may hold as many
requests in flight as its prompts need (BESTOFN_CONCURRENCY = prompts in flight x requests per prompt), so
neither side is capped below the other. Printed: prompts/s of each, the ratio (goal: Ray >= 0.9x), Ray's fixed
cost (start-up, reading, the actor pool: a build of A prompts) and its per-prompt overhead, in wall time (Ray's
seconds per prompt past the fixed cost, minus the single process's) and in CPU time (this process and every
process it started but the server: the driver, and with Ray its raylet, GCS, workers and actors). On a shared
machine the CPU figures are the ones to trust: wall time there measures the share of the cores each side gets.

    python bench/bench_ray.py [--prompts 2000] [-n 4] [--latency 0.1] [--concurrency 64] [--actors 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

for _k, _v in {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}.items():
    os.environ.setdefault(_k, _v)  # a local Ray on loopback only (read when Ray is imported)

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from bench_build import MODEL, Server  # noqa: E402

from bestofn.apps.build import Columns, build  # noqa: E402


def prompts_file(folder: Path, count: int) -> Path:
    """`count` distinct prompts: IFEval's, numbered once they run out."""
    src = Path(os.environ.get("BESTOFN_DATA_DIR", REPO.parent / "shared" / "data")) / "ifeval" / "input_data.jsonl"
    base = [json.loads(line)["prompt"] for line in src.read_text(encoding="utf-8").splitlines()]
    rows = [{"id": f"p{i}", "prompt": base[i % len(base)] + (f" (variant {i // len(base)})" if i >= len(base) else "")}
            for i in range(count)]
    path = folder / f"prompts-{count}.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


class CpuMeter:
    """CPU seconds of this process and of every process it started (but `exclude`), sampled while it runs."""

    def __init__(self, exclude: int):
        import psutil

        self.psutil, self.exclude, self.seen, self.stop = psutil, exclude, {}, threading.Event()

    def _sample(self) -> None:
        for p in self.psutil.Process().children(recursive=True):
            if p.pid != self.exclude:
                try:
                    t = p.cpu_times()
                    self.seen[p.pid] = max(self.seen.get(p.pid, 0.0), t.user + t.system)
                except self.psutil.Error:
                    pass

    def __enter__(self) -> CpuMeter:
        self._sample()
        self.base = {pid: self.seen[pid] for pid in self.seen}
        self.own = time.process_time()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        return self

    def _loop(self) -> None:
        while not self.stop.wait(0.2):
            self._sample()

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        self._sample()
        self.seconds = time.process_time() - self.own + sum(t - self.base.get(pid, 0.0) for pid, t in self.seen.items())
        self.stop.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=2000)
    parser.add_argument("-n", type=int, default=4)
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--concurrency", type=int, default=64, help="prompts in flight, in all")
    parser.add_argument("--actors", type=int, default=2)
    args = parser.parse_args()
    per_prompt = 1 + 4 * args.n
    per_actor = args.concurrency // args.actors
    os.environ["BESTOFN_SERVER_FLAVOUR"] = "vllm"
    server = Server(args.latency)
    tmp = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    prompts = prompts_file(tmp, args.prompts)
    options = dict(model=f"vllm:{MODEL}", judge_model=f"vllm:{MODEL}", base_url=server.base_url, n=args.n,
                   max_tokens=64, columns=Columns(id="id"), progress=False, cache=False)
    print(f"{args.prompts} prompts x (1 generation request with n={args.n} + {4 * args.n} judge requests), "
          f"loopback at {args.latency * 1000:.0f} ms per request")
    import ray

    try:
        os.environ["BESTOFN_CONCURRENCY"] = str(args.concurrency * per_prompt)
        server.ask("reset")
        started = time.perf_counter()
        with CpuMeter(server.proc.pid) as cpu_single:
            single = build(prompts, tmp / "single.jsonl", concurrency=args.concurrency, **options)
        t_single = time.perf_counter() - started
        calls_single, _ = server.ask("stats")
        assert single.done_now == args.prompts and single.failed == 0, single

        ray.init(address="local", num_cpus=args.actors, include_dashboard=False, log_to_driver=False)
        os.environ["BESTOFN_CONCURRENCY"] = str(per_actor * per_prompt)  # forwarded to the actors
        ray_options = dict(ray=True, file_type="jsonl", ray_actors=args.actors, concurrency=per_actor, **options)
        started = time.perf_counter()
        (tmp / "small").mkdir()
        small = build(prompts_file(tmp / "small", args.actors), tmp / "small-out", **ray_options)
        t_fixed = time.perf_counter() - started
        assert small.done_now == args.actors, small
        server.ask("reset")
        started = time.perf_counter()
        with CpuMeter(server.proc.pid) as cpu_ray:
            on_ray = build(prompts, tmp / "ray", **ray_options)
        t_ray = time.perf_counter() - started
        calls_ray, _ = server.ask("stats")
        assert on_ray.done_now == args.prompts and on_ray.failed == 0, on_ray
        assert calls_ray == calls_single, (calls_ray, calls_single)
    finally:
        server.close()
        ray.shutdown()
    rate_single, rate_ray = args.prompts / t_single, args.prompts / t_ray
    steady = args.prompts / max(t_ray - t_fixed, 1e-9)
    overhead_ms = ((t_ray - t_fixed) - t_single) / args.prompts * 1000
    cpu_ms = {k: c.seconds / args.prompts * 1000 for k, c in (("single", cpu_single), ("ray", cpu_ray))}
    print(f"  single process, --concurrency {args.concurrency}: {t_single:7.1f} s  {rate_single:6.1f} prompts/s  "
          f"({calls_single} requests)  CPU {cpu_ms['single']:.1f} ms/prompt")
    print(f"  Ray, {args.actors} actors x {per_actor}:{' ' * 12}{t_ray:7.1f} s  {rate_ray:6.1f} prompts/s  "
          f"({calls_ray} requests)  CPU {cpu_ms['ray']:.1f} ms/prompt")
    print(f"  Ray / single: {rate_ray / rate_single:.2f}x (goal >= 0.9)")
    print(f"  Ray fixed cost (start-up, reading, the pool: a {args.actors}-prompt build): {t_fixed:.1f} s; "
          f"past it, {steady:.1f} prompts/s ({steady / rate_single:.2f}x), per-prompt overhead "
          f"{overhead_ms:+.2f} ms of wall time; CPU per prompt {cpu_ms['ray'] / cpu_ms['single']:.2f}x the single "
          f"process's ({cpu_ms['ray'] - cpu_ms['single']:+.1f} ms, fixed cost included)")


if __name__ == "__main__":
    main()
