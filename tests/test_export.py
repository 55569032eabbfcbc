"""Exports: every format in JSONL and Parquet, built through the real pipeline against the loopback server,
loads in pyarrow and in datasets with the documented columns."""

from __future__ import annotations


import pytest

from bestofn.apps.build import build
from bestofn.sinks.export import FORMATS, read_rows, to_dataset

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")
pajson = pytest.importorskip("pyarrow.json")
pytest.importorskip("datasets")

PAIR_COLUMNS = {"id", "prompt", "chosen", "rejected", "score_chosen", "score_rejected", "margin", "strategy", "judges",
                "template_sha256", "generator", "panel", "seed", "prompt_id", "chosen_id", "rejected_id"}
COLUMNS = {
    "trl-conversational": PAIR_COLUMNS,
    "trl": PAIR_COLUMNS,
    "kto": {"id", "prompt", "completion", "label", "score", "candidate_id", "prompt_id", "strategy", "generator",
            "panel", "seed"},
    "sft": {"id", "prompt_id", "messages", "score", "candidate_id", "generator", "panel", "seed"},
    "full": {"id", "prompt_id", "prompt", "metadata", "candidates", "verdicts", "ranking", "best_id", "pairs", "judges",
             "generator", "panel", "seed", "skipped_reason"},
}


@pytest.fixture
def prompts(ifeval_prompts):
    return ifeval_prompts(8)


def _options(srv):
    return dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url, panel="default", n=4,
                max_tokens=32, columns=__import__("bestofn.apps.build", fromlist=["Columns"]).Columns(id="key"),
                progress=False)


def test_every_format_loads_in_pyarrow_and_datasets(tmp_path, prompts, loopback):
    first = build(prompts, tmp_path / "trl-conversational.jsonl", **_options(loopback))
    assert first.done_now == 8 and first.cost.calls > 0 and first.pairs > 0
    calls = loopback.count
    tables = {}
    for fmt in FORMATS:
        for suffix in (".jsonl", ".parquet"):
            out = tmp_path / f"{fmt}{suffix}"
            summary = build(prompts, out, format=fmt, **_options(loopback))
            assert summary.done_before + summary.done_now == 8 and summary.pairs == first.pairs
            table = pq.read_table(out) if suffix == ".parquet" else pajson.read_json(out)
            assert COLUMNS[fmt] <= set(table.column_names), (fmt, suffix)
            assert table.num_rows == summary.rows
            dataset = to_dataset(out)
            assert COLUMNS[fmt] <= set(dataset.column_names) and len(dataset) == summary.rows
            tables[fmt, suffix] = table
    assert loopback.count == calls  # every later build was answered by the shared cache

    conv = tables["trl-conversational", ".parquet"]
    assert conv.num_rows == first.pairs
    assert pa.types.is_list(conv.schema.field("prompt").type)
    assert conv.schema.field("chosen").type.value_type == pa.struct([("role", pa.string()), ("content", pa.string())])
    plain = tables["trl", ".parquet"]
    assert plain.schema.field("prompt").type == pa.string() and plain.schema.field("chosen").type == pa.string()
    kto = tables["kto", ".parquet"]
    assert kto.schema.field("label").type == pa.bool_()
    labels = kto.column("label").to_pylist()
    assert labels.count(True) == labels.count(False) == first.pairs  # best-worst: one up, one down per pair
    full = tables["full", ".jsonl"]
    assert full.num_rows == 8
    for row in full.to_pylist():
        assert len(row["candidates"]) == 4
        assert {"correctness", "safety", "helpfulness", "instruction_following"} <= set(row["candidates"][0]["ratings"])

    for row in read_rows(tmp_path / "trl-conversational.jsonl"):
        assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        assert row["margin"] == pytest.approx(row["score_chosen"] - row["score_rejected"], abs=1e-6)
        assert row["margin"] >= 0.1 and row["chosen"][0]["role"] == "assistant"
    ids = [r["id"] for r in read_rows(tmp_path / "trl.jsonl")]
    assert len(ids) == len(set(ids))
    assert ids == [r["id"] for r in read_rows(tmp_path / "trl-conversational.parquet")]


def test_parquet_falls_back_to_json_text_for_mixed_columns(tmp_path):
    from bestofn.sinks.export import to_table, write_rows

    rows = [{"id": "a", "metadata": {"x": 1}}, {"id": "b", "metadata": {"x": "text"}}, {"id": "c", "metadata": [1]}]
    write_rows(tmp_path / "m.parquet", rows)
    table = pq.read_table(tmp_path / "m.parquet")
    assert table.column("metadata").to_pylist() == ['{"x": 1}', '{"x": "text"}', "[1]"]
    assert to_table([{"id": "a", "v": 1}]).column("v").to_pylist() == [1]
