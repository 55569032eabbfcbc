"""llama.cpp's extra buffer types (weight repacking) on and off: prompt and generation tokens/s, side by side.

For each GGUF (default: the packaged SmolLM2-135M-Instruct Q4_1), each configuration runs in its own process
(BESTOFN_LOCAL_EXTRA_BUFFERS=on|off, loaded through the local backend's own `llama_class()`, whose params are
checked to carry the choice), with the backend's thread defaults (BESTOFN_LOCAL_THREADS sets them). A process
loads the model (timed: repacking happens there), warms up, then times an eval of a fixed 300-token prompt and
64 greedy decode steps after it (temperature 0, EOS ignored, so every run decodes the same number of tokens),
twice, keeping the faster of each. Repeats interleave the two configurations (on/off, then off/on, ...) so that
load on a shared machine hits both alike; medians are printed with the on/off ratio, and each run's figures.
Figures and the decision drawn from them: bestofn/backends/cpu.py.

    python bench/bench_extra_buffers.py [GGUF ...] [--repeats 3] [--prompt-tokens 300] [--gen-tokens 64]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bestofn.backends.cpu import ENV, cpu_flags, features  # noqa: E402
from bestofn.backends.local import N_CTX, _threads, default_model_path, llama_class  # noqa: E402

TEXT = (
    "The water cycle moves water between the oceans, the air and the land. Sunlight warms the surface of the sea, "
    "and some of the water evaporates into vapour that rises with warm air. As the air climbs it cools, the vapour "
    "condenses on tiny particles of dust and salt, and clouds form. When the droplets grow heavy enough they fall "
    "as rain, snow or hail. Some of that water soaks into the ground and feeds springs and wells; some runs off "
    "into streams and rivers that carry it back to the sea; and some is taken up by plants, which release it "
    "again through their leaves. "
)


def child(path: str, prompt_tokens: int, gen_tokens: int) -> dict:
    started = time.perf_counter()
    llm = llama_class()(model_path=path, n_ctx=N_CTX, verbose=False, logits_all=False, **_threads())
    load_s = time.perf_counter() - started
    tokens = llm.tokenize((TEXT * 20).encode(), add_bos=True)[:prompt_tokens]
    assert len(tokens) == prompt_tokens, len(tokens)
    llm.eval(tokens[:16])  # warm-up: first-call allocations and thread start-up out of the timings
    prompt_s = gen_s = float("inf")
    for _ in range(2):  # the faster of two, each a fresh prompt eval and the decode after it
        llm.reset()
        started = time.perf_counter()
        llm.eval(tokens)
        prompt_s = min(prompt_s, time.perf_counter() - started)
        started = time.perf_counter()
        for _ in range(gen_tokens):
            llm.eval([llm.sample(temp=0.0)])
        gen_s = min(gen_s, time.perf_counter() - started)
    return {"extra_buffers": bool(llm.model_params.use_extra_bufts), "load_s": load_s,
            "prompt_tps": prompt_tokens / prompt_s, "gen_tps": gen_tokens / gen_s}


def run(path: Path, mode: str, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, __file__, "--child", str(path), "--prompt-tokens", str(args.prompt_tokens),
           "--gen-tokens", str(args.gen_tokens)]
    proc = subprocess.run(cmd, env={**os.environ, ENV: mode}, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise SystemExit(f"{path.name} with extra buffers {mode}: exit {proc.returncode}\n{proc.stderr[-2000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["extra_buffers"] == (mode == "on"), out
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("gguf", nargs="*", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prompt-tokens", type=int, default=300)
    parser.add_argument("--gen-tokens", type=int, default=64)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.prompt_tokens, args.gen_tokens)))
        return
    import llama_cpp

    print(f"llama-cpp-python {llama_cpp.__version__}; CPU {features(cpu_flags())}; {os.cpu_count()} cores; "
          f"threads {_threads() or 'llama-cpp-python defaults'}; {args.repeats} interleaved repeats, medians")
    print(f"{'model':44} {'bufs':>4} {'load s':>7} {'prompt tok/s':>13} {'gen tok/s':>10}")
    for path in args.gguf or [default_model_path()]:
        results: dict[str, list[dict]] = {"on": [], "off": []}
        for i in range(args.repeats):
            for mode in ("on", "off") if i % 2 == 0 else ("off", "on"):
                results[mode].append(run(path, mode, args))
        med = {mode: {k: statistics.median(r[k] for r in rs) for k in ("load_s", "prompt_tps", "gen_tps")}
               for mode, rs in results.items()}
        for mode in ("on", "off"):
            m = med[mode]
            print(f"{path.name[:44]:44} {mode:>4} {m['load_s']:7.2f} {m['prompt_tps']:13.1f} {m['gen_tps']:10.1f}")
        ratio = {k: med["on"][k] / med["off"][k] for k in ("load_s", "prompt_tps", "gen_tps")}
        print(f"{'':44} {'on/off':>4} {ratio['load_s']:7.2f} {ratio['prompt_tps']:13.2f} {ratio['gen_tps']:10.2f}")
        for k in ("prompt_tps", "gen_tps"):
            spread = {mode: [round(r[k], 1) for r in rs] for mode, rs in results.items()}
            print(f"{'':44} {k} per run: {spread}")


if __name__ == "__main__":
    main()
