"""`bestofn rerank QUERY --docs DOCS.jsonl ...`: the JSON shape, the table, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from bestofn.apps.cli.main import app
from tests.rerank_example import GATING, LSTM_DOCS, LSTM_QUERY


@pytest.fixture
def docs_file(tmp_path):
    path = tmp_path / "docs.jsonl"
    lines = [json.dumps({"id": f"doc-{i}", "text": t, "year": 2020 + i}) for i, t in enumerate(LSTM_DOCS)]
    path.write_text("\n".join(lines) + "\n\n", encoding="utf-8")  # a blank line is fine
    return path


def test_cli_json(docs_file):
    result = CliRunner().invoke(app, ["rerank", LSTM_QUERY, "--docs", str(docs_file), "--top-n", "2",
                                      "--method", "bi-encoder", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)  # stdout is nothing but the JSON
    results = payload["results"]
    assert len(results) == 2 and all(set(r) == {"index", "relevance_score", "document"} for r in results)
    assert results[0]["index"] == GATING
    assert results[0]["document"] == {"id": f"doc-{GATING}", "text": LSTM_DOCS[GATING], "year": 2020 + GATING}
    assert results[0]["relevance_score"] >= results[1]["relevance_score"]
    assert payload["meta"]["method"] == "bi-encoder" and payload["meta"]["documents"] == 3


def test_cli_table(docs_file):
    result = CliRunner().invoke(app, ["rerank", LSTM_QUERY, "--docs", str(docs_file), "--method", "bi-encoder"])
    assert result.exit_code == 0, result.output
    rows = [line for line in result.stdout.splitlines() if "doc-" in line]
    assert len(rows) == 3 and f"doc-{GATING}" in rows[0]  # best first


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok"}\n{"text": oops}\n', "docs.jsonl:2: not valid JSON"),
    ('{"text": "ok"}\n{"body": "x"}\n', "docs.jsonl:2: no string field 'text'"),
])
def test_cli_bad_documents_give_one_line_naming_file_and_line(tmp_path, content, message):
    path = tmp_path / "docs.jsonl"
    path.write_text(content, encoding="utf-8")
    proc = subprocess.run([sys.executable, "-m", "bestofn", "rerank", "q", "--docs", str(path), "--json"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_cli_unknown_method(docs_file):
    result = CliRunner().invoke(app, ["rerank", "q", "--docs", str(docs_file), "--method", "bm25"])
    assert result.exit_code != 0 and "unknown rerank method" in str(result.exception)
