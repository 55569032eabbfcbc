"""The embedded model's engines and weights side by side, in one run: today's path (the sequential engine on the
shipped Q4_1 weights), the batched engine (bestofn.backends.local_batch) on the same weights, and the default
(the batched engine on the weights `BESTOFN_LOCAL_WEIGHTS=auto` picks for this CPU: bestofn.backends.cpu).

0. Kernels: llama.cpp's raw speed per weight format (Q4_1 as shipped, f16, bf16, Q8_0; the converted ones also
   with flash attention): prompt tokens/s and the tokens/s of 1, 4 and 16 sequences decoding together, at 1 and 2
   threads, after a generation's short prompt (70 tokens) and a judge call's (500).

1. Generation: `-n 4` samples of "Why is the sky blue?" (temperature 0.8, `--max-tokens`), tokens per second.
2. Judging: the default panel's 16 judge calls of a best-of-4 (`judge_all` on the four sequential samples, the
   pipeline's own order and judges, no call cache), seconds; every verdict's status, and whether the two
   engines' scores agree.
3. With `--run`: `bestofn run "Why is the sky blue?" -n 4 --no-cache` in a child process per engine, seconds
   (model load included).
4. With `--contention`: the default's generation next to another llama.cpp process (a child generating in a loop
   on all cores, its threads fixed), with the threads fixed at llama-cpp-python's counts and fitted to the free
   cores (bestofn.backends.local_threads).

Each measurement alternates the configurations (`--repeats` rounds, the order flipped every round) so that load from other processes hits both alike, and reports the median of wall seconds
and of process CPU seconds (CPU time is what the work costs when other processes share the cores). The machine's
load average is printed before and after. BESTOFN_LOCAL_THREADS sets the threads of both.

    python bench/bench_local.py [--max-tokens 128] [--repeats 2] [--run | --contention]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bestofn.backends.base import SamplingParams  # noqa: E402
from bestofn.backends.cpu import WEIGHTS_ENV  # noqa: E402
from bestofn.backends.local import LocalBackend  # noqa: E402
from bestofn.config.panel import load_panel  # noqa: E402
from bestofn.judging import JudgeInput, build_judges  # noqa: E402
from bestofn.pipeline.generate import mark_duplicates, to_candidate  # noqa: E402
from bestofn.pipeline.schedule import judge_all  # noqa: E402
from bestofn.records import Message  # noqa: E402

#: (engine, weights): today's path, the batched engine on the same weights, the default
ENGINES = ("sequential/original", "batched/original", "batched/auto")
PROMPT = "Why is the sky blue?"


def backend(config: str) -> LocalBackend:
    engine, weights = config.split("/")
    with mock.patch.dict(os.environ, {WEIGHTS_ENV: weights}):  # the backend reads its weights when made
        b = LocalBackend()
    b.engine = engine
    return b


def kernels() -> list[tuple[str, int, int, int, float, float]]:
    """(weights, threads, sequences, prompt tokens, prompt tok/s, decode tok/s) from raw llama_decode batches."""
    from bestofn.backends.local import _load, default_model_path
    from bestofn.backends.local_weights import prepare

    rows = []
    for kind in ("original", "f16", "bf16", "q8_0"):
        path, failed = prepare(default_model_path(), kind)
        if failed:
            print(f"  {kind}: {failed}")
            continue
        llama, worker = _load(path, matrix_kernels=kind != "original")
        # on the models' worker thread, as every decode of the backend: llama.cpp's OpenMP threads belong to the
        # thread that starts them, and a second team (this one's) would slow the later figures (local._worker)
        rows.extend(worker.submit(_kernel_rows, llama, kind).result())
    return rows


#: (threads, sequences, prompt tokens) of the kernel table: a generation's short prompt, and a judge call's
#: 400-600 tokens (decoding slows with the context, and flash attention more: bestofn.backends.local)
KERNEL_SHAPES = [(1, 1, 70), (1, 4, 70), (2, 1, 70), (2, 4, 70), (2, 1, 500), (2, 4, 500), (2, 16, 500)]


def _kernel_rows(llama, kind: str) -> list[tuple[str, int, int, int, float, float]]:
    """One weight format's rows of the kernel table: each sequence's prompt evaluated on it, then decode steps
    of a token per sequence."""
    import llama_cpp.llama_cpp as C
    from llama_cpp import _internals

    rows = []
    text = llama.tokenize(b"Why is the sky blue? Explain it in detail, with the physics of light. " * 40)
    batch = _internals.LlamaBatch(n_tokens=512, embd=0, n_seq_max=1, verbose=False)
    # the backend loads every format without flash attention (bestofn.backends.local.llama_options): the
    # converted weights with and without it
    for flash, (threads, n_seqs, length) in itertools.product((False, True) if kind != "original" else (False,),
                                                              KERNEL_SHAPES):
        prompt = text[:length]
        params = type(llama.context_params).from_buffer_copy(llama.context_params)
        params.n_ctx, params.n_seq_max, params.kv_unified = n_seqs * 1024, n_seqs, False
        params.n_threads = params.n_threads_batch = threads
        params.flash_attn_type = (C.LLAMA_FLASH_ATTN_TYPE_ENABLED if flash
                                  else C.LLAMA_FLASH_ATTN_TYPE_DISABLED)
        ctx = _internals.LlamaContext(model=llama._model, params=params, verbose=False)

        def decode(items):
            b = batch.batch
            b.n_tokens = len(items)
            for i, (tok, pos, seq, logits) in enumerate(items):
                b.token[i], b.pos[i], b.n_seq_id[i], b.logits[i] = tok, pos, 1, logits
                b.seq_id[i][0] = seq
            assert C.llama_decode(ctx.ctx, b) == 0

        t0 = time.perf_counter()
        for seq in range(min(n_seqs, 4)):  # at most 4 prompts timed; the others copied
            decode([(t, p, seq, p == len(prompt) - 1) for p, t in enumerate(prompt)])
        prompt_tps = min(n_seqs, 4) * len(prompt) / (time.perf_counter() - t0)
        for seq in range(4, n_seqs):
            C.llama_memory_seq_cp(ctx.memory, 0, seq, -1, -1)
        steps, t0 = 32, time.perf_counter()
        for k in range(steps):
            decode([(prompt[k], len(prompt) + k, seq, True) for seq in range(n_seqs)])
        rows.append((f"{kind}+fa" if flash else kind, threads, n_seqs, length, prompt_tps,
                     n_seqs * steps / (time.perf_counter() - t0)))
        ctx.close()
    batch.close()
    return rows


def timed(fn):
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - wall, time.process_time() - cpu


def alternate(repeats: int, measure) -> dict[str, list]:
    """measure(engine) -> (result, wall, cpu), for each engine, `repeats` rounds, the order flipped each round."""
    runs: dict[str, list] = {e: [] for e in ENGINES}
    for r in range(repeats):
        for engine in ENGINES if r % 2 == 0 else ENGINES[::-1]:
            runs[engine].append(measure(engine))
    return runs


def medians(runs: list) -> tuple[float, float]:
    return statistics.median(w for _, w, _ in runs), statistics.median(c for _, _, c in runs)


def generation(n: int, max_tokens: int, repeats: int) -> dict:
    messages = [Message(role="user", content=PROMPT)]
    params = SamplingParams(n=n, temperature=0.8, max_tokens=max_tokens, seed=0)
    runs = alternate(repeats, lambda e: timed(lambda: asyncio.run(backend(e).sample(messages, params))))
    out = {}
    for engine, rs in runs.items():
        tokens = sum(c.usage.completion_tokens for c in rs[0][0])
        wall, cpu = medians(rs)
        out[engine] = {"tokens": tokens, "wall": wall, "cpu": cpu, "tps": tokens / wall, "tpcpu": tokens / cpu,
                       "texts": [c.text for c in rs[0][0]], "finish": [c.finish_reason for c in rs[0][0]]}
    return out


def judging(samples: list, repeats: int) -> dict:
    messages = [Message(role="user", content=PROMPT)]
    params = SamplingParams(n=len(samples), temperature=0.8, max_tokens=512, seed=0)
    candidates = mark_duplicates([to_candidate(backend(ENGINES[0]), i, c, params) for i, c in enumerate(samples)])
    item = JudgeInput(prompt=messages, seed=0)
    panel = load_panel("default")

    def measure(engine: str):
        b = backend(engine)
        judges = build_judges(panel, lambda config: b)
        return timed(lambda: asyncio.run(judge_all(judges, item, candidates)))

    out = {}
    for engine, rs in alternate(repeats, measure).items():
        wall, cpu = medians(rs)
        verdicts = rs[0][0]
        out[engine] = {"calls": len(verdicts), "wall": wall, "cpu": cpu,
                       "status": sorted({v.status for v in verdicts}),
                       "scores": [(v.judge, v.candidate_ids, v.score) for v in verdicts]}
    return out


def full_run(repeats: int) -> dict:
    def measure(engine: str):
        env = {**os.environ, "BESTOFN_LOCAL_ENGINE": engine.split("/")[0], WEIGHTS_ENV: engine.split("/")[1]}
        cmd = [sys.executable, "-m", "bestofn", "run", PROMPT, "-n", "4", "--no-cache"]
        before, wall = os.times(), time.perf_counter()
        subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
        after = os.times()
        cpu = after.children_user + after.children_system - before.children_user - before.children_system
        return None, time.perf_counter() - wall, cpu

    return {e: dict(zip(("wall", "cpu"), medians(rs))) for e, rs in alternate(repeats, measure).items()}


#: another llama.cpp process: the embedded model generating in a loop, its threads fixed at all the cores
RIVAL = """
import sys
from bestofn.backends.base import SamplingParams
from bestofn.backends.local import LocalBackend
from bestofn.records import Message
from bestofn.sync import run_sync
backend = LocalBackend()
run_sync(backend.sample([Message(role="user", content="hi")], SamplingParams(max_tokens=2)))
print("ready", flush=True)
while True:
    run_sync(backend.sample([Message(role="user", content="Tell me a story.")], SamplingParams(max_tokens=256)))
"""


def contention(n: int, max_tokens: int, repeats: int) -> dict:
    """Generation (the default engine and weights) next to RIVAL: threads fixed at llama-cpp-python's counts, and
    fitted to the cores other processes leave free, alternating."""
    from bestofn.backends.local_threads import Threads

    b = backend("batched/auto")
    llama, _ = b._ensure()
    limit = (llama.n_threads, llama.n_threads_batch)
    messages = [Message(role="user", content=PROMPT)]
    params = SamplingParams(n=n, temperature=0.8, max_tokens=max_tokens, seed=0)
    env = {**os.environ, "BESTOFN_LOCAL_THREADS": str(os.cpu_count() or 1)}
    rival = subprocess.Popen([sys.executable, "-c", RIVAL], env=env, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert rival.stdout is not None and rival.stdout.readline().strip() == "ready"
        runs: dict[str, list] = {"fixed": [], "fitted": []}
        for r in range(repeats):
            for name in ("fixed", "fitted") if r % 2 == 0 else ("fitted", "fixed"):
                # fixed: a policy that never measures (no readings) keeps the configured counts
                llama.threads = (Threads(busy=lambda: None) if name == "fixed" else Threads()).limited_to(*limit)
                if name == "fitted":
                    time.sleep(0.3)  # one interval measured before the first decode
                out = timed(lambda: asyncio.run(b.sample(messages, params)))
                runs[name].append((out[0], out[1], out[2], llama.threads.current, llama.threads.others))
    finally:
        rival.kill()
        rival.wait()
        llama.threads = Threads().limited_to(*limit)
    result = {}
    for name, rs in runs.items():
        tokens = statistics.median(sum(c.usage.completion_tokens for c in r[0]) for r in rs)
        wall = statistics.median(r[1] for r in rs)
        result[name] = {"tps": tokens / wall, "wall": wall, "threads": rs[-1][3], "others": rs[-1][4]}
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=4)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--run", action="store_true", help="also time `bestofn run -n 4` per engine (child processes)")
    ap.add_argument("--contention", action="store_true",
                    help="only: generation next to another llama.cpp process, threads fixed against fitted")
    args = ap.parse_args()
    print(f"load average at start: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores); "
          f"BESTOFN_LOCAL_THREADS={os.environ.get('BESTOFN_LOCAL_THREADS', '(default)')}; "
          f"{WEIGHTS_ENV}=auto here means {backend('batched/auto').weights} ({backend('batched/auto').weights_reason})")
    if args.contention:
        con = contention(args.n, args.max_tokens, args.repeats)
        print(f"\ngeneration next to another llama.cpp process (its threads fixed at {os.cpu_count()}), n={args.n}, "
              f"max_tokens={args.max_tokens} (median of {args.repeats})")
        for name, r in con.items():
            others = "-" if r["others"] is None else f"{r['others']:.1f}"
            print(f"  threads {name:<6} {r['tps']:7.1f} tok/s  {r['wall']:6.2f} s  threads (gen, batch) {r['threads']}"
                  f"  other processes' cores {others}")
        print(f"  fitted / fixed: {con['fitted']['tps'] / con['fixed']['tps']:.2f}x")
        print(f"\nload average at end: {os.getloadavg()[0]:.2f}")
        return
    print("\nkernels: llama_decode tokens/s (a prompt of 70 or 500 tokens per sequence, then 32 decode steps)")
    print(f"{'weights':<9} {'threads':>7} {'seqs':>4} {'context':>7} {'prompt':>7} {'decode':>7}")
    kernel = {}
    for kind, threads, n_seqs, length, prompt_tps, decode_tps in kernels():
        kernel[kind, threads, n_seqs, length] = decode_tps
        print(f"{kind:<9} {threads:>7} {n_seqs:>4} {length:>7} {prompt_tps:>7.0f} {decode_tps:>7.0f}")
    today = ENGINES[0]
    for config in ENGINES:  # load the models outside the timings
        asyncio.run(backend(config).sample([Message(role="user", content="hi")], SamplingParams(max_tokens=2)))

    gen = generation(args.n, args.max_tokens, args.repeats)
    print(f"\ngeneration, n={args.n}, max_tokens={args.max_tokens}, temperature 0.8 (median of {args.repeats})")
    print(f"{'engine/weights':<20} {'tokens':>6} {'wall s':>7} {'tok/s':>7} {'cpu s':>7} {'tok/cpu-s':>9}  "
          f"{'x today':>7}  same texts as today")
    for name, r in gen.items():
        same = sum(x == y for x, y in zip(gen[today]["texts"], r["texts"]))
        print(f"{name:<20} {r['tokens']:>6} {r['wall']:>7.2f} {r['tps']:>7.1f} {r['cpu']:>7.2f} {r['tpcpu']:>9.1f}  "
              f"{r['tps'] / gen[today]['tps']:>6.2f}x  {same}/{args.n}")
    print("goal: >= 2x today's tokens/s")
    threads = max(t for _, t, _, _ in kernel)
    auto = backend("batched/auto").variant or "original"
    if (auto, threads, 4, 70) in kernel and args.n == 4:
        ceiling = kernel[auto, threads, 4, 70]
        print(f"ceiling: llama_decode alone, 4 sequences on {auto} at {threads} threads, {ceiling:.0f} tok/s = "
              f"{ceiling / gen[today]['tps']:.2f}x today; the default reaches "
              f"{gen['batched/auto']['tps'] / ceiling:.0%} of it")

    texts = asyncio.run(backend(today).sample(
        [Message(role="user", content=PROMPT)], SamplingParams(n=4, temperature=0.8, max_tokens=512, seed=0)))
    judged = judging(texts, args.repeats)
    print(f"\njudging: the default panel on 4 candidates, {judged[today]['calls']} verdicts "
          f"(median of {args.repeats})")
    print(f"{'engine/weights':<20} {'wall s':>7} {'cpu s':>7} {'x today':>7}  same scores  statuses")
    for name, r in judged.items():
        agree = sum(x == y for x, y in zip(judged[today]["scores"], r["scores"]))
        print(f"{name:<20} {r['wall']:>7.2f} {r['cpu']:>7.2f} {judged[today]['wall'] / r['wall']:>6.2f}x  "
              f"{agree:>5}/{len(r['scores'])}  {','.join(r['status'])}")
    print("goal: >= 2x faster than today")

    if args.run:
        runs = full_run(args.repeats)
        print(f"\n`bestofn run {PROMPT!r} -n 4 --no-cache` (child process, model load included)")
        for name, r in runs.items():
            print(f"{name:<20} {r['wall']:>7.2f} s wall {r['cpu']:>7.2f} s cpu  "
                  f"{runs[today]['wall'] / r['wall']:.2f}x today")
        print("goal: the default (batched/auto) <= 15 s on an idle 2-core machine")
    print(f"\nload average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
