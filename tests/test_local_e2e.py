"""End to end on the real embedded model (SmolLM2-135M-Instruct): no key, no network, no fakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from bestofn.backends.base import SamplingParams
from bestofn.records import Message, PreferencePair, Selection

JUDGES = {"correctness", "safety", "helpfulness", "instruction_following"}


def bestofn(*args: str, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "bestofn", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


async def test_local_backend_samples_n_distinct_candidates(local_backend):
    params = SamplingParams(n=3, temperature=0.8, max_tokens=24, seed=7)
    out = await local_backend.sample([Message(role="user", content="Name a fruit and say why you like it.")], params)
    assert len(out) == 3
    assert len({c.text for c in out}) == 3, [c.text for c in out]
    assert all(c.usage.completion_tokens > 0 and c.finish_reason in ("stop", "length") for c in out)
    again = await local_backend.sample([Message(role="user", content="Name a fruit and say why you like it.")], params)
    assert [c.text for c in again] == [c.text for c in out]  # the same seed gives the same candidates


RUN_ARGS = ("run", "Give one tip for staying focused while studying.", "-n", "4", "--max-tokens", "48",
            "--pair-margin", "0", "--json")


@pytest.fixture(scope="module")
def cache_env(tmp_path_factory):
    return {"BESTOFN_CACHE_DIR": str(tmp_path_factory.mktemp("run-cache"))}


@pytest.fixture(scope="module")
def run_json(tmp_path_factory, cache_env):
    log = tmp_path_factory.mktemp("log") / "pairs.jsonl"
    proc = bestofn(*RUN_ARGS, "--log", str(log), env=cache_env)
    return json.loads(proc.stdout), log


def test_a_rerun_is_served_from_the_cache_with_the_same_choice(run_json, cache_env):
    first, _ = run_json
    again = json.loads(bestofn(*RUN_ARGS, env=cache_env).stdout)
    assert again["cost"]["calls"] == 0 and again["cost"]["cache_hits"] == first["cost"]["calls"]
    assert again["ranking"] == first["ranking"] and again["scores"] == first["scores"]


def test_run_json_has_the_documented_shape(run_json):
    data, _ = run_json
    assert set(data) >= {"prompt", "panel", "candidates", "verdicts", "scores", "ranking", "best", "pairs", "cost",
                         "stats"}
    assert data["prompt"] == [{"role": "user", "content": "Give one tip for staying focused while studying."}]
    assert data["panel"] == "default" and len(data["candidates"]) == 4
    c = data["candidates"][0]
    assert set(c) >= {"id", "index", "text", "finish_reason", "model", "duplicate_of", "usage", "latency_s"}
    assert c["model"] == "local" and set(c["usage"]) == {"prompt_tokens", "completion_tokens"}
    v = data["verdicts"][0]
    assert set(v) >= {"judge", "kind", "candidate_ids", "status", "score", "normalized", "reasoning", "reason",
                      "template_sha256", "model"}
    assert data["best"]["id"] == data["ranking"][0]
    assert set(data["cost"]) >= {"calls", "prompt_tokens", "completion_tokens", "usd", "seconds"}
    assert data["cost"]["calls"] >= 4 + 4 * 4  # n samples, then four judges per unique candidate
    Selection.model_validate(data)


def test_every_judge_returns_an_ok_verdict_on_the_real_model(run_json):
    data, _ = run_json
    ok = {v["judge"] for v in data["verdicts"] if v["status"] == "ok"}
    assert ok == JUDGES
    for v in data["verdicts"]:
        if v["status"] == "ok":
            assert 1 <= v["score"] <= 10 and 0 <= v["normalized"] <= 1
        else:
            assert v["score"] is None and v["reason"]
    first_try = sum(v["status"] == "ok" and v["attempts"] == 1 for v in data["verdicts"]) / len(data["verdicts"])
    print(f"\njudge replies valid on the first try: {first_try:.0%} of {len(data['verdicts'])}")


def test_run_logs_valid_pairs_in_trl_conversational_format(run_json):
    data, log = run_json
    lines = log.read_text().splitlines()
    assert len(lines) >= 1 and len(lines) == len(data["pairs"])
    for line in lines:
        row = json.loads(line)
        pair = PreferencePair.model_validate(row)
        assert row["prompt"][0]["role"] == "user"
        assert pair.chosen[0].role == pair.rejected[0].role == "assistant"
        assert pair.chosen[0].content != pair.rejected[0].content
        assert pair.margin == pytest.approx(pair.score_chosen - pair.score_rejected, abs=1e-6) and pair.margin > 0
        assert set(pair.judges) <= JUDGES and pair.generator == "local" and pair.panel == "default"
        assert all(len(sha) == 64 for sha in pair.template_sha256.values())


def test_run_prints_the_best_answer_and_a_table():
    proc = bestofn("run", "Say hello in French.", "-n", "2", "--max-tokens", "16")
    assert proc.stdout.strip()  # the best answer on stdout
    assert "correctness" in proc.stderr and "calls" in proc.stderr  # the table and cost on stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "   "], "no non-empty user message"),
        (["run", "hi", "-n", "0"], "n must be between 1 and 64"),
        (["run", "hi", "-n", "65"], "n must be between 1 and 64"),
        (["run", "hi", "--panel", "nope"], "unknown panel 'nope'"),
        (["run", "hi", "--model", "nosuch:x"], "unknown backend 'nosuch'"),
        (["run", "hi", "--model", "local:/nowhere/model.gguf"], "local model file not found"),
    ],
)
def test_errors_are_one_clear_line_and_a_nonzero_exit(args, message):
    proc = bestofn(*args, "--json", check=False)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert proc.stdout == ""


def test_judges_list_and_show():
    assert "default" in bestofn("judges", "list").stdout
    shown = bestofn("judges", "show", "default").stdout
    assert 'name = "default"' in shown and "safety_veto" in shown


def test_run_passes_constraints_to_verifier_judges(tmp_path):
    panel = "tests/panels/verifiers.toml"
    args = ("run", "Reply with exactly one word in capital letters.", "-n", "3", "--max-tokens", "8",
            "--panel", panel, "--json")
    checked = json.loads(bestofn(*args, "--constraints",
                                 '{"instruction_id_list": ["change_case:english_capital"], "kwargs": [{}]}').stdout)
    assert {v["status"] for v in checked["verdicts"]} == {"ok"}
    assert all(v["kind"] == "verifier" and v["score"] in (0.0, 1.0) for v in checked["verdicts"])
    for v in checked["verdicts"]:  # a text with a lower-case letter never passes the rule
        text = next(c["text"] for c in checked["candidates"] if c["id"] == v["candidate_ids"][0])
        if text != text.upper():
            assert v["score"] == 0.0 and "change_case:english_capital" in v["reasoning"]
    proc = bestofn(*args, check=False)  # no constraints: every verifier abstains, so nothing can be ranked
    unchecked = json.loads(proc.stdout)
    assert {v["status"] for v in unchecked["verdicts"]} == {"abstain"}
    assert proc.returncode == 1 and unchecked["best"] is None  # exit 1, the Selection still printed


def test_local_threads_come_from_the_environment_and_a_bad_value_is_named():
    code = ("from bestofn.backends.local import LocalBackend; b = LocalBackend(); llama, _ = b._ensure(); "
            "print(llama.n_threads, llama.n_threads_batch)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True,
                         env={**os.environ, "BESTOFN_LOCAL_THREADS": "2"}).stdout
    assert out.split() == ["2", "2"]
    proc = bestofn("run", "hi", "-n", "1", env={"BESTOFN_LOCAL_THREADS": "two"}, check=False)
    assert proc.returncode != 0 and "BESTOFN_LOCAL_THREADS must be an integer, got 'two'" in proc.stderr
    assert "Traceback" not in proc.stderr
