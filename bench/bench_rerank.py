"""Reranking speed (documents per second) and quality (nDCG@10, MRR) for each method, offline.

The relevance set: SVAMP (../shared/data/svamp/SVAMP.json, 1,000 math word problems), read as known-item
passage retrieval: the query is a problem's Question, the one relevant document is its own Body (the passage
that holds the facts the question needs), and the other candidates are the Bodies of other problems (seeded
draw; problems that share the exact Body text are excluded). Candidates are shuffled, so the input order
carries no signal: a random ranking scores nDCG@10 = mean over ranks r of 1/log2(r+1) (0.454 with 10
candidates; MRR 0.293). Random distractors make the set easy for anything that matches topics. SVAMP reuses bodies with variations, so a distractor can be a near-duplicate of the target: the
figures are a floor, comparable across methods, not a published benchmark.

No cross-encoder weights are available offline: its speed is measured on a MiniLM-L6-sized cross-encoder
(all-MiniLM-L6-v2's encoder with an untrained one-logit head, the architecture of the usual
ms-marco-MiniLM-L-6 rerankers); its nDCG is not meaningful and is not reported.

    python bench/bench_rerank.py [--queries 20] [--candidates 10] [--methods bi-encoder,cross-encoder,...]
Prints figures; asserts nothing. Caching is off, so every figure is a cold computation (models loaded first).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bestofn.apps.rerank.api import arerank  # noqa: E402
from bestofn.apps.rerank.metrics import mean_ndcg_at_k, mean_reciprocal_rank  # noqa: E402

DATA = Path(os.environ.get("BESTOFN_DATA_DIR") or REPO.parent / "shared" / "data")


def svamp_set(queries: int, candidates: int, seed: int = 0) -> list[tuple[str, list[dict], dict]]:
    rows = json.loads((DATA / "svamp" / "SVAMP.json").read_text(encoding="utf-8"))
    bodies = sorted({r["Body"].strip() for r in rows})
    rng = random.Random(seed)
    picked = rng.sample(rows, queries)
    out = []
    for row in picked:
        target = row["Body"].strip()
        others = rng.sample([b for b in bodies if b != target], candidates - 1)
        docs = [{"id": "target", "text": target}] + [{"id": f"d{i}", "text": b} for i, b in enumerate(others)]
        rng.shuffle(docs)
        out.append((row["Question"].strip(), docs, {"target": 1}))
    return out


def minilm_cross_encoder() -> Path:
    from transformers import AutoTokenizer, BertForSequenceClassification

    from bestofn.apps.rerank.encoders import packaged_model_path

    folder = Path(tempfile.mkdtemp(prefix="bench-cross-encoder-"))
    src = str(packaged_model_path())
    BertForSequenceClassification.from_pretrained(src, num_labels=1, local_files_only=True).save_pretrained(folder)
    AutoTokenizer.from_pretrained(src, local_files_only=True).save_pretrained(folder)
    return folder


async def run_method(method: str, data, options: dict) -> dict:
    # warm-up: load the model (and import its libraries) outside the timed part
    t = time.perf_counter()
    await arerank(data[0][0], data[0][1][:2], method=method, cache=False, **options)
    load_s = time.perf_counter() - t
    runs, docs, calls = [], 0, 0
    started, cpu = time.perf_counter(), time.process_time()
    for query, candidates, qrels in data:
        response = await arerank(query, candidates, method=method, cache=False, **options)
        runs.append(([r.document["id"] for r in response.results], qrels))
        docs += len(candidates)
        calls += response.meta.llm_calls
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    return {"method": method, "queries": len(data), "docs": docs, "seconds": seconds, "docs_per_s": docs / seconds,
            "docs_per_cpu_s": docs / cpu_s,
            "llm_calls": calls, "load_s": load_s, "ndcg10": mean_ndcg_at_k(runs, 10), "mrr": mean_reciprocal_rank(runs)}


async def bulk_speed(method: str, n: int, options: dict) -> tuple[float, float]:
    rows = json.loads((DATA / "svamp" / "SVAMP.json").read_text(encoding="utf-8"))
    docs = [r["Body"] for r in rows][:n]
    t, cpu = time.perf_counter(), time.process_time()
    await arerank(rows[0]["Question"], docs, method=method, cache=False, **options)
    return n / (time.perf_counter() - t), n / (time.process_time() - cpu)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--candidates", type=int, default=10)
    parser.add_argument("--methods", default="bi-encoder,cross-encoder,llm-pointwise,llm-listwise,cascade")
    parser.add_argument("--model", default="local")
    args = parser.parse_args()
    data = svamp_set(args.queries, args.candidates)
    random_ndcg = sum(1 / math.log2(r + 1) for r in range(1, args.candidates + 1)) / args.candidates
    random_mrr = sum(1 / r for r in range(1, args.candidates + 1)) / args.candidates
    print(f"SVAMP known-item set: {args.queries} queries x {args.candidates} candidates; load average "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"random ranking (expected): nDCG@10 {random_ndcg:.3f}, MRR {random_mrr:.3f}")
    print("docs/s is wall time; docs/cpu-s divides by this process's CPU time (both cores count), which the\n"
          "other processes on a shared machine do not inflate")
    print(f"{'method':<16}{'docs/s':>9}{'docs/cpu-s':>11}{'nDCG@10':>9}{'MRR':>7}{'LLM calls':>11}{'load s':>8}")
    for method in args.methods.split(","):
        options: dict = {}
        if method in ("llm-pointwise", "llm-listwise", "cascade"):
            options["model"] = args.model
        if method == "cascade":
            options["stages"] = "bi-encoder:5,llm-pointwise"
        if method == "cross-encoder":
            options["encoder"] = minilm_cross_encoder()
        row = await run_method(method, data, options)
        quality = "n/a" if method == "cross-encoder" else f"{row['ndcg10']:.3f}"
        mrr = "n/a" if method == "cross-encoder" else f"{row['mrr']:.3f}"
        print(f"{method:<16}{row['docs_per_s']:>9.1f}{row['docs_per_cpu_s']:>11.1f}{quality:>9}{mrr:>7}"
              f"{row['llm_calls']:>11}{row['load_s']:>8.1f}", flush=True)
        if method in ("bi-encoder", "cross-encoder"):
            wall, cpu = await bulk_speed(method, 1000, options)
            print(f"  {method} on one query x 1000 documents: {wall:.0f} docs/s, {cpu:.0f} docs/cpu-s", flush=True)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    asyncio.run(main())
