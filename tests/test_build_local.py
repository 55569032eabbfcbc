"""A small build on the real embedded model (SmolLM2-135M via llama.cpp): 5 real prompts, n=2, short answers.

Proves the whole path: CSV input -> generate -> judge -> aggregate -> pairs -> journal -> JSONL; then the same
command again makes no call, and a second build to another output (format `full`) is answered by the cache."""

from __future__ import annotations

import csv

from bestofn.apps.build import build
from bestofn.sinks.export import read_rows
from bestofn.config.resources import builtin_dir

PANEL = "compact" if (builtin_dir("judges") / "compact.toml").is_file() else "default"


def test_small_build_on_the_local_model(tmp_path, data_dir, local_backend):
    with open(data_dir / "xstest" / "xstest_prompts.csv", encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        rows = [next(reader) for _ in range(5)]
    prompts = tmp_path / "prompts.csv"
    with open(prompts, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    options = dict(model="local", panel=PANEL, n=2, max_tokens=48, concurrency=1, progress=False)

    out = tmp_path / "pairs.jsonl"
    summary = build(prompts, out, **options)
    assert summary.done_now == 5 and summary.failed == 0 and summary.prompts == 5
    judge_calls = 2 if PANEL == "compact" else 8
    assert summary.cost.calls >= 5 * (2 + judge_calls)
    assert summary.cost.prompt_tokens > 0 and summary.cost.completion_tokens > 0
    pairs = read_rows(out)
    assert len(pairs) == summary.pairs == summary.rows
    # every prompt either gave a pair or is counted with its reason
    assert summary.pairs + sum(v for k, v in summary.skipped.items() if k.startswith("no pair")) == 5
    texts = {r["prompt"]: r["id"] for r in rows}
    for p in pairs:
        assert p["prompt_id"] in texts.values() and p["generator"] == "local" and p["panel"] == PANEL
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"] and p["margin"] >= 0.1

    again = build(prompts, out, **options)  # the same command again: nothing to do, not a single call
    assert again.done_before == 5 and again.done_now == 0 and again.cost.calls == 0 and again.cost.cache_hits == 0

    full = tmp_path / "full.jsonl"  # another output: every call is answered by the shared cache
    redo = build(prompts, full, **{**options, "format": "full"})
    assert redo.done_now == 5 and redo.cost.calls == 0 and redo.cost.cache_hits >= 5 * (2 + judge_calls)
    records = read_rows(full)
    assert [r["prompt_id"] for r in records] == [r["id"] for r in rows]
    for record in records:
        assert len(record["candidates"]) == 2 and record["verdicts"]
        assert {v["judge"] for v in record["verdicts"]} >= {"correctness", "safety", "helpfulness", "instruction_following"}
    by_prompt = {r["prompt_id"]: {c["text"] for c in r["candidates"]} for r in records}
    for p in pairs:  # the cache returned the very same candidates
        assert {p["chosen"][0]["content"], p["rejected"][0]["content"]} <= by_prompt[p["prompt_id"]]
