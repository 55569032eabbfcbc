"""Scaling curves: model calls and wall time of one selection against n, per panel, on a loopback server.

The loopback OpenAI-compatible server (tests/loopback.py, in its own process, so its CPU is not the client's)
answers every request after a fixed latency (100 ms). For n in {4, 16, 64} and each panel

  pointwise   `default`: four rubric judges, one call each per candidate
  compact     `compact`: the four criteria in one call per candidate
  all-pairs   `pairwise`, mode all-pairs: every pair in both orders, n(n-1) calls
  knockout    `pairwise` with mode = "knockout": a seeded bracket, both orders per match, 2(n-1) calls
  listwise    `listwise`: all candidates in one call, two orders; RankGPT sliding windows past 8 candidates

one `aselect(n=..., panel=...)` runs (vllm flavour: the n samples are one request; cache off), and the table
gives the model calls (counted at the server), the wall time, and the ratio to that panel's floor:

  floor = rounds x latency, where a round is a set of calls that can be in flight together: the generation
  call, then each dependent step of the judging (one for pointwise, compact and all-pairs; one per bracket
  round for knockout; one per window of a sliding-window pass for listwise), a step with more calls than the
  backend's cap on requests in flight (BESTOFN_CONCURRENCY, default 64) counting as ceil(calls / cap) rounds.

The rounds are read from the verdicts (knockout rounds, listwise windows), so the floor is the panel's own.
The listwise reply is a valid permutation (a shuffle of the labels, as a model's would be; the server's generic
JSON would repeat labels and cost a re-ask per window); every other reply is the server's schema-valid JSON.
Writes one PNG (calls and seconds against n, log scales) to --out.

    python bench/bench_scaling.py [--n 4 16 64] [--latency 0.1] [--panels ...] [--repeats 1]
                                  [--out bench/scaling.png]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from server_process import ServerProcess  # noqa: E402  (bench/server_process.py)

from bestofn.backends.limits import DEFAULT_CONCURRENCY, env_int  # noqa: E402
from bestofn.config.panel import Panel, load_panel  # noqa: E402
from bestofn.pipeline.select import aselect  # noqa: E402
from bestofn.records import Selection  # noqa: E402

PROMPT = "Why is the sky blue? Answer in two sentences."
MODEL = "bench"
PANELS = ("pointwise", "compact", "all-pairs", "knockout", "listwise")


# ------------------------------------------------------------------------------------------------ server


def _permutation_hook(latency: float):
    """A listwise window's reply: a seeded shuffle of its labels (after the latency, like every other reply)."""
    from tests.loopback import Fault, _resolve, _rng, _schema_of, completion_body

    def hook(req):
        body = req.body if isinstance(req.body, dict) else {}
        schema = _schema_of(body.get("response_format"))
        ranking = ((schema or {}).get("properties") or {}).get("ranking")
        if ranking is None:
            return None
        labels = list(_resolve(ranking.get("items", {}), schema).get("enum", []))
        _rng(body.get("messages"), body.get("seed")).shuffle(labels)
        reply = completion_body(json.dumps({"ranking": labels}), model=body.get("model", "loopback"))
        return Fault(200, body=json.dumps(reply).encode(), headers={"content-type": "application/json"},
                     delay=latency)

    return hook


def _serve(latency: float, conn) -> None:
    from tests.loopback import LoopbackServer

    srv = LoopbackServer(latency=latency, flavour="vllm").start()
    srv.hook = _permutation_hook(latency)
    conn.send(srv.base_url)
    while (msg := conn.recv()) != "stop":
        if msg == "count":
            conn.send(srv.count)
        elif msg == "reset":
            hook, srv.hook = srv.hook, None
            srv.reset()
            srv.hook = hook
            conn.send(True)
    srv.stop()
    conn.send(True)


# ------------------------------------------------------------------------------------------------ panels


def panels(folder: Path) -> dict[str, Panel]:
    source = (REPO / "judges" / "pairwise.toml").read_text()
    assert 'mode = "all-pairs"' in source, "judges/pairwise.toml no longer sets mode = \"all-pairs\""
    knockout = folder / "pairwise-knockout.toml"
    knockout.write_text(source.replace('name = "pairwise"', 'name = "pairwise-knockout"', 1)
                        .replace('mode = "all-pairs"', 'mode = "knockout"', 1))
    return {"pointwise": load_panel("default"), "compact": load_panel("compact"), "all-pairs": load_panel("pairwise"),
            "knockout": load_panel(knockout), "listwise": load_panel("listwise")}


def judge_steps(sel: Selection) -> list[int]:
    """Calls per dependent step of the judging (the generation call not included), read from the verdicts."""
    steps: Counter[int] = Counter()
    judged = [v for v in sel.verdicts if v.status != "abstain"]
    # pointwise: one call per rubric and candidate, all at once (a compact call's criteria verdicts share it)
    steps[0] += len({(v.template_sha256, v.candidate_ids[0]) for v in judged if v.kind == "rubric"})
    for v in judged:
        if v.kind == "pairwise":  # a match is two calls (both orders) side by side; knockout: one step a round
            steps[int(v.details.get("round", 1)) - 1] += 2
    for judge in dict.fromkeys(v.judge for v in judged if v.kind == "listwise"):
        first = next(v for v in judged if v.judge == judge)  # the orders side by side, each one's windows in turn
        for run in first.details.get("runs", []):
            for k in range(run.get("windows", 1)):
                steps[k] += 1
    return [steps[k] for k in sorted(steps) if steps[k]]


def floor_rounds(sel: Selection, cap: int) -> int:
    return 1 + sum(math.ceil(calls / cap) for calls in judge_steps(sel))


# ------------------------------------------------------------------------------------------------ run


def run(args: argparse.Namespace) -> list[dict]:
    os.environ.setdefault("BESTOFN_SERVER_FLAVOUR", "vllm")  # no /v1/models probe
    cap = env_int("BESTOFN_CONCURRENCY", DEFAULT_CONCURRENCY) or DEFAULT_CONCURRENCY
    server = ServerProcess(_serve, args.latency)
    folder = Path(tempfile.mkdtemp(prefix="bench-scaling-"))
    rows = []
    try:
        chosen = {name: panel for name, panel in panels(folder).items() if name in args.panels}

        async def one(n: int, panel: Panel, seed: int) -> tuple[Selection, float]:
            started = time.perf_counter()
            sel = await aselect(PROMPT, n=n, model=f"vllm:{MODEL}", judge_model=f"vllm:{MODEL}",
                                base_url=server.base_url, panel=panel, seed=seed, cache=False)
            return sel, time.perf_counter() - started

        async def warm() -> None:  # imports, the client and its connections
            for panel in chosen.values():
                await one(4, panel, seed=10_000)

        asyncio.run(warm())
        for n in args.n:
            for name, panel in chosen.items():
                walls, calls, sel = [], set(), None
                for rep in range(args.repeats):
                    server.ask("reset")
                    sel, wall = asyncio.run(one(n, panel, seed=rep))
                    walls.append(wall)
                    calls.add(server.ask("count"))
                    bad = Counter(v.status for v in sel.verdicts if v.status not in ("ok", "abstain"))
                    assert not bad, f"{name} n={n}: verdicts {dict(bad)}: {sel.verdicts[0].reason}"
                assert sel is not None and len(calls) == 1, calls
                rounds = floor_rounds(sel, cap)
                wall = statistics.median(walls)
                rows.append({"n": n, "panel": name, "calls": calls.pop(), "predicted": 1 + sum(judge_steps(sel)),
                             "rounds": rounds, "floor": rounds * args.latency, "wall": wall,
                             "ratio": wall / (rounds * args.latency)})
                print_row(rows[-1])
    finally:
        server.close()
    return rows


HEADER = f"{'n':>3}  {'panel':10} {'calls':>6} {'rounds':>6} {'floor s':>8} {'wall s':>8} {'wall/floor':>10}"


def print_row(row: dict) -> None:
    note = "" if row["calls"] == row["predicted"] else f"   (the verdicts account for {row['predicted']} calls)"
    print(f"{row['n']:3d}  {row['panel']:10} {row['calls']:6d} {row['rounds']:6d} {row['floor']:8.1f} "
          f"{row['wall']:8.2f} {row['ratio']:10.2f}{note}", flush=True)


def plot(rows: list[dict], out: Path, latency: float, cap: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, (calls_ax, wall_ax) = plt.subplots(1, 2, figsize=(11, 4.4))
    for name in dict.fromkeys(r["panel"] for r in rows):
        mine = [r for r in rows if r["panel"] == name]
        ns = [r["n"] for r in mine]
        (line,) = calls_ax.plot(ns, [r["calls"] for r in mine], marker="o", label=name)
        wall_ax.plot(ns, [r["wall"] for r in mine], marker="o", color=line.get_color(), label=f"{name} (wall)")
        wall_ax.plot(ns, [r["floor"] for r in mine], linestyle=":", color=line.get_color())
    for ax, what in ((calls_ax, "model calls per selection"), (wall_ax, "seconds per selection")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(sorted({r["n"] for r in rows}), [str(n) for n in sorted({r["n"] for r in rows})])
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.set_xlabel("n (candidates)")
        ax.set_ylabel(what)
        ax.grid(True, which="both", alpha=0.3)
    calls_ax.set_title("model calls")
    wall_ax.set_title(f"wall time (dotted: the floor, rounds x {latency * 1000:.0f} ms)")
    calls_ax.legend(fontsize=8)
    fig.suptitle(f"bestofn scaling: one selection against a loopback server at {latency * 1000:.0f} ms per call, "
                 f"at most {cap} calls in flight", fontsize=10)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    print(f"wrote {out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[4, 16, 64])
    parser.add_argument("--latency", type=float, default=0.1)
    parser.add_argument("--panels", nargs="+", default=list(PANELS), choices=PANELS)
    parser.add_argument("--repeats", type=int, default=1, help="runs per cell (the median wall time is shown)")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "scaling.png")
    args = parser.parse_args()
    cap = env_int("BESTOFN_CONCURRENCY", DEFAULT_CONCURRENCY) or DEFAULT_CONCURRENCY
    print(f"one selection per cell, loopback latency {args.latency * 1000:.0f} ms, at most {cap} calls in flight, "
          f"cache off; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(HEADER)
    rows = run(args)
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    plot(rows, args.out, args.latency, cap)


if __name__ == "__main__":
    main()
