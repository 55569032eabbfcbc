"""`bestofn build --format sft`: the best answer of each prompt in TRL's conversational SFT format, when it is in
the panel's top tier and clears --min-score. Built through the real pipeline over the loopback server, whose
generator and judges answer scripted texts (tests/test_trl_reward.py's `scripted` judge)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bestofn.apps.build import build
from bestofn.sinks.export import read_rows
from tests.loopback import completion_body
from tests.test_trl_reward import scripted

REPO = Path(__file__).resolve().parent.parent
NO_COMMA = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}
PROMPTS = {  # prompt -> (its two candidates, extra columns)
    "Describe Kyoto.": (["GOOD: Kyoto at dawn.", "Kyoto at dusk."], {}),  # best 1.0
    "Describe Nara.": (["Nara at dawn.", "UNSAFE: Nara at dusk."], {}),  # best 4/9
    "Describe Osaka.": (["UNSAFE: Osaka at dawn.", "UNSAFE: Osaka at noon."], {}),  # best vetoed
    "Describe Kobe without commas.": (["GOOD: Kobe, by the sea.", "Kobe, at noon."], NO_COMMA),  # best fails the gate
}


def hook(req):
    body = req.body or {}
    if not req.path.endswith("/chat/completions"):
        return None  # the server's own answer (GET /v1/models: its flavour)
    if body.get("response_format"):
        return scripted(req)
    asked = body["messages"][-1]["content"]
    texts = PROMPTS[asked][0]
    out = completion_body("x", n=body.get("n", 1))
    for i, choice in enumerate(out["choices"]):
        choice["message"]["content"] = texts[i % len(texts)]
    return 200, out


@pytest.fixture
def prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p, **extra}) + "\n"
                            for i, (p, (_, extra)) in enumerate(PROMPTS.items())))
    return path


def options(srv, **kw):
    return dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url, panel="verifier-first",
                n=2, progress=False, **kw)


def test_sft_rows_are_the_top_tier_bests_that_clear_min_score(tmp_path, prompts, loopback):
    loopback.hook = hook
    out = tmp_path / "sft.jsonl"
    summary = build(prompts, out, format="sft", **options(loopback))
    rows = read_rows(out)
    assert summary.rows == len(rows) == 2
    kyoto, nara = rows
    assert kyoto["messages"] == [{"role": "user", "content": "Describe Kyoto."},
                                 {"role": "assistant", "content": "GOOD: Kyoto at dawn."}]
    assert kyoto["score"] == 1.0 and kyoto["prompt_id"] == "p0" and kyoto["panel"] == "verifier-first"
    assert nara["messages"][-1]["content"] == "Nara at dawn." and nara["score"] == pytest.approx(4 / 9, abs=1e-6)
    assert summary.skipped == {"no row: best candidate vetoed or unchecked by the safety judge": 1,
                               "no row: best candidate failed or was unchecked by a gate": 1}

    calls = loopback.count
    again = build(prompts, out, format="sft", min_score=0.5, **options(loopback))  # re-filtered from the journal
    assert loopback.count == calls and again.done_before == 4
    assert [r["prompt_id"] for r in read_rows(out)] == ["p0"] and again.rows == 1
    assert again.skipped["no row: best score below --min-score 0.5"] == 1
    assert read_rows(out)[0]["id"] == kyoto["id"]  # a row's id is stable


def test_sft_parquet_loads_with_datasets(tmp_path, prompts, loopback):
    datasets = pytest.importorskip("datasets")
    loopback.hook = hook
    out = tmp_path / "sft.parquet"
    build(prompts, out, format="sft", **options(loopback))
    ds = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert len(ds) == 2 and ds[0]["messages"][-1] == {"role": "assistant", "content": "GOOD: Kyoto at dawn."}


def test_the_cli_takes_format_sft_and_min_score(tmp_path, prompts, loopback):
    loopback.hook = hook
    out = tmp_path / "sft.jsonl"
    args = ["build", str(prompts), "-o", str(out), "--format", "sft", "--min-score", "0.9", "-n", "2",
            "--model", "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", loopback.base_url,
            "--panel", "verifier-first", "--json"]
    done = subprocess.run([sys.executable, "-m", "bestofn", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["format"] == "sft" and summary["rows"] == 1
    assert [r["prompt_id"] for r in read_rows(out)] == ["p0"]
    bad = subprocess.run([sys.executable, "-m", "bestofn", *args[:6], "--min-score", "1.5"], capture_output=True,
                         text=True, timeout=60, cwd=REPO)
    assert bad.returncode != 0 and "--min-score" in bad.stderr
