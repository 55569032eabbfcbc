"""Reading a build's prompts: JSONL, JSON, CSV and Parquet; bad records named by file and line; the CLI's
--on-error. Real rows come from ../shared/data."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from bestofn.apps.build import Columns, build, read_prompts
from bestofn.apps.cli.main import app
from bestofn.errors import ConfigError
from bestofn.records import Message


def _ifeval(data_dir, k):
    with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
        return [json.loads(next(fh)) for _ in range(k)]


def test_jsonl_with_configurable_columns_ids_constraints_and_metadata(tmp_path, data_dir):
    rows = _ifeval(data_dir, 3)
    path = tmp_path / "ifeval.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + "\n")  # a trailing blank line is not a record
    got = read_prompts(path, Columns(id="key"))
    assert got.issues == [] and got.records == 3
    assert [r.id for r in got.rows] == [str(r["key"]) for r in rows]
    first = got.rows[0]
    assert first.messages == [Message(role="user", content=rows[0]["prompt"])]
    assert first.constraints == {"instruction_id_list": rows[0]["instruction_id_list"], "kwargs": rows[0]["kwargs"]}
    assert first.given_id and first.line == 1


def test_bad_records_name_file_and_line(tmp_path, data_dir):
    good = _ifeval(data_dir, 2)
    lines = [
        json.dumps({"prompt": good[0]["prompt"], "source": "ifeval"}),  # 1 ok, metadata kept
        "{not json",                                                      # 2
        json.dumps({"prompt": "   "}),                                    # 3 empty
        json.dumps({"prompt": 42}),                                       # 4 wrong type
        json.dumps({"messages": [{"role": "robot", "content": "hi"}]}),   # 5 bad role
        json.dumps({"text": "no prompt field"}),                          # 6
        json.dumps({"id": "a", "prompt": good[1]["prompt"]}),             # 7 ok
        json.dumps({"id": "a", "prompt": "another prompt"}),              # 8 duplicate id
        json.dumps({"prompt": good[0]["prompt"]}),                        # 9 duplicate prompt
        json.dumps(["a", "list"]),                                        # 10 not an object
        json.dumps({"id": 1.5, "prompt": "float id"}),                    # 11 wrong id type
        json.dumps({"messages": [{"role": "system", "content": "Be brief."}]}),  # 12 no user turn
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    got = read_prompts(path)
    assert [r.line for r in got.rows] == [1, 7]
    assert got.rows[0].metadata == {"source": "ifeval"}
    by_line = {i.line: str(i) for i in got.issues}
    assert sorted(by_line) == [2, 3, 4, 5, 6, 8, 9, 10, 11, 12]
    assert all(text.startswith(f"{path}:{line}: ") for line, text in by_line.items())
    assert "not valid JSON" in by_line[2]
    assert "empty prompt" in by_line[3]
    assert "prompt: expected a string, got int" in by_line[4]
    assert "messages[0].role" in by_line[5]
    assert "no 'prompt' or 'messages' field" in by_line[6]
    assert "duplicate id 'a' (first at line 7)" in by_line[8]
    assert "duplicate prompt (same messages as line 1)" in by_line[9]
    assert "got list" in by_line[10]
    assert "id: expected a string or an integer" in by_line[11]
    assert "no non-empty user message" in by_line[12]


def test_csv_json_and_parquet(tmp_path, data_dir):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    with open(data_dir / "xstest" / "xstest_prompts.csv", encoding="utf-8", newline="") as fh:
        records = list(csv.DictReader(fh))[:4]
    src = tmp_path / "x.csv"
    with open(src, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(records[0]))
        writer.writeheader()
        writer.writerows(records)
    got = read_prompts(src, Columns(id="id"))
    assert got.issues == [] and [r.id for r in got.rows] == [r["id"] for r in records]
    assert got.rows[0].messages[0].content == records[0]["prompt"]
    assert got.rows[2].line == 4 and "type" in got.rows[0].metadata

    conv = [{"id": f"c{i}", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": r["prompt"]}]}
            for i, r in enumerate(records)]
    (tmp_path / "c.json").write_text(json.dumps(conv))
    assert [len(r.messages) for r in read_prompts(tmp_path / "c.json").rows] == [2, 2, 2, 2]
    pq.write_table(pa.Table.from_pylist(conv), tmp_path / "c.parquet")
    parquet = read_prompts(tmp_path / "c.parquet")
    assert [r.messages for r in parquet.rows] == [r.messages for r in read_prompts(tmp_path / "c.json").rows]
    with pytest.raises(ConfigError, match="unknown input type"):
        read_prompts(src.with_suffix(".txt").write_text("x") and src.with_suffix(".txt"))
    with pytest.raises(ConfigError, match="not found"):
        read_prompts(tmp_path / "missing.jsonl")


def test_on_error_stop_refuses_bad_input_before_any_call(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": ""}) + "\n")
    with pytest.raises(ConfigError, match=r"p\.jsonl:2: prompt: empty prompt"):
        build(path, tmp_path / "out.jsonl", on_error="stop", model="vllm:none", base_url="http://127.0.0.1:9/v1")
    assert not (tmp_path / "out.jsonl").exists()
    result = CliRunner().invoke(app, ["build", str(path), "-o", str(tmp_path / "o.jsonl"), "--on-error", "stop"])
    assert result.exit_code != 0


def test_output_suffix_and_options_are_checked(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text(json.dumps({"prompt": "ok"}) + "\n")
    for kwargs, match in [
        ({"out": tmp_path / "o.csv"}, "suffix must be .jsonl or .parquet"),
        ({"format": "dpo"}, "unknown format"),
        ({"strategy": "best-median"}, "unknown strategy"),
        ({"n": 65}, "n must be between 1 and 64"),
        ({"on_error": "ignore"}, "--on-error"),
    ]:
        out = kwargs.pop("out", tmp_path / "o.jsonl")
        with pytest.raises(ConfigError, match=match):
            build(path, out, **kwargs)
