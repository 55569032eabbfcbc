"""`bestofn build --dry-run`, `--max-calls` and `--max-usd`, against the loopback protocol server: the dry run
calls nothing and its call counts are the real build's (a bound for listwise); a budget stops a build cleanly,
the rerun goes on for as much again, and the finished build's rows are an unbudgeted build's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bestofn.apps.build import build
from bestofn.apps.build.estimate import BuildEstimate
from bestofn.apps.build.journal import Journal, state_dir
from bestofn.apps.cli.main import app
from bestofn.backends import pricing
from bestofn.errors import ConfigError
from tests.loopback import LoopbackServer

N = 3
PER_PROMPT = N + 4 * N  # the default panel: n generations, then 4 rubric judges on each of n distinct answers


def _prompts(tmp_path: Path, count: int, bad: bool = False) -> Path:
    path = tmp_path / "prompts.jsonl"
    lines = [json.dumps({"id": f"q{i}", "prompt": f"Question {i}: why is the sky blue at hour {i}?"})
             for i in range(count)]
    if bad:
        lines.insert(1, json.dumps({"text": "no prompt field"}))
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def _options(srv: LoopbackServer, **extra) -> dict:
    return dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url, n=N, max_tokens=32,
                concurrency=3, cache=False, progress=False, **extra)


@pytest.fixture
def srv():
    with LoopbackServer(flavour="vllm") as server:
        yield server


@pytest.fixture
def knockout(tmp_path) -> Path:
    path = tmp_path / "knockout.toml"
    path.write_text('name = "knockout"\naggregate = "bradley_terry"\nquorum = 1\n\n[[judge]]\nname = "duel"\n'
                    'kind = "pairwise"\nrubric = "pairwise.v1"\nmode = "knockout"\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("panel", ["default", "compact", "pairwise", "knockout", "verifier-first"])
def test_dry_run_calls_nothing_writes_nothing_and_counts_the_calls_the_build_makes(tmp_path, srv, knockout, panel):
    prompts, out = _prompts(tmp_path, 4, bad=True), tmp_path / "out.jsonl"
    options = _options(srv, panel=knockout if panel == "knockout" else panel)
    estimate = build(prompts, out, dry_run=True, **options)
    assert isinstance(estimate, BuildEstimate)
    assert srv.requests == []  # not one request, not even GET /models
    assert not out.exists() and not state_dir(out).exists()
    assert (estimate.input_records, estimate.prompts, estimate.pending, len(estimate.input_issues)) == (5, 4, 4, 1)
    assert estimate.preview[0].startswith("q0 (line 1): Question 0")
    assert estimate.stages[0].stage == "generation" and estimate.stages[0].calls == 4 * N
    summary = build(prompts, out, **options)
    assert summary.done_now == 4 and summary.failed == 0
    assert summary.cost.calls == estimate.calls  # exact: n distinct answers, valid replies, no cache
    pairwise_calls = {"pairwise": N * (N - 1), "knockout": 2 * (N - 1)}.get(panel)
    if pairwise_calls:
        assert estimate.calls == 4 * (N + pairwise_calls)
    # the same reader and errors as a build: --on-error stop names the bad record's file and line, calls nothing
    with pytest.raises(ConfigError, match=rf"{prompts}:2: no 'prompt' or 'messages'"):
        build(prompts, tmp_path / "other.jsonl", dry_run=True, on_error="stop", **options)


def test_dry_run_bounds_the_listwise_calls_from_shuffles_windows_and_passes(tmp_path, srv):
    prompts, out = _prompts(tmp_path, 3), tmp_path / "out.jsonl"
    options = {**_options(srv, panel="listwise"), "n": 10}  # window 8, step 4: sliding windows over 10 answers
    estimate = build(prompts, out, dry_run=True, **options)
    assert srv.requests == []
    ranking = estimate.stages[1]
    assert ranking.stage == "ranking" and ranking.bound and estimate.calls_bound
    assert ranking.calls == 3 * 2 * 3  # 3 prompts x 2 shuffles x (2 windows, then 1 over the unsettled rest)
    summary = build(prompts, out, **options)
    judged = summary.cost.calls - 3 * 10
    assert 3 * 2 * 2 <= judged <= ranking.calls + ranking.reasks  # more than one pass ran; within the bound


def test_dry_run_counts_prompt_tokens_with_the_models_tokenizer(tmp_path, local_backend):
    prompts = _prompts(tmp_path, 1)
    estimate = build(prompts, tmp_path / "out.jsonl", dry_run=True, model="local", judge_model="local", n=2,
                     max_tokens=16, progress=False)
    generation = estimate.stages[0]
    assert generation.tokens_by == "the model's tokenizer"
    import asyncio

    tokens = asyncio.run(local_backend.count_tokens("Question 0: why is the sky blue at hour 0?"))
    assert generation.prompt_tokens == 2 * (tokens + 8) and generation.completion_tokens == 2 * 16
    assert generation.usd is None and estimate.unpriced == ["local"]


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text(encoding="utf-8").splitlines()]


def test_max_calls_stops_cleanly_the_rerun_goes_on_and_the_end_is_the_unbudgeted_rows(tmp_path, srv):
    prompts = _prompts(tmp_path, 12)
    reference = tmp_path / "reference.jsonl"
    assert build(prompts, reference, **_options(srv)).cost.calls == 12 * PER_PROMPT
    out, budget, runs, total = tmp_path / "out.jsonl", 40, [], 0
    while True:
        summary = build(prompts, out, max_calls=budget, **{**_options(srv), "concurrency": 6})
        runs.append(summary)
        total += summary.cost.calls
        assert summary.build_cost.calls == total  # this run's and the build's totals
        if summary.budget_stop is None:
            break
        assert budget <= summary.cost.calls < budget + PER_PROMPT  # about N: at most one prompt's worth over
        assert f"--max-calls {budget} reached" in summary.budget_stop
        done = sum(s.done_now for s in runs)
        assert summary.done_before + summary.done_now == done and summary.failed == 0
        journal = Journal(out)
        try:
            assert len(journal.finished()) == done  # nothing already done is lost
        finally:
            journal.close()
        ids = _ids(out)
        assert len(ids) == len(set(ids)) == summary.rows  # each finished prompt's rows, once
        left = build(prompts, out, dry_run=True, **_options(srv))  # the dry run of a resumed build: what is left
        assert (left.done_before, left.pending, left.calls) == (done, 12 - done, (12 - done) * PER_PROMPT)
        assert len(runs) < 6
    assert len(runs) >= 3 and runs[0].done_before == 0 and runs[1].done_before == runs[0].done_now
    assert out.read_bytes() == reference.read_bytes()  # the same rows as the unbudgeted build, byte for byte
    assert total == 12 * PER_PROMPT  # no prompt was run twice


def test_the_command_exits_3_when_the_budget_stops_it(tmp_path, srv):
    prompts, out = _prompts(tmp_path, 6), tmp_path / "out.jsonl"
    args = ["build", str(prompts), "-o", str(out), "--model", "vllm:loopback", "--judge-model", "vllm:loopback",
            "--base-url", srv.base_url, "-n", str(N), "--max-tokens", "32", "--no-cache", "--max-calls", "20"]
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 3, result.output
    summary = json.loads(result.stdout)
    assert summary["budget_stop"].startswith("--max-calls 20 reached") and summary["max_calls"] == 20
    assert "prompts not started: run the same command again" in " ".join(result.stderr.split())
    dry = CliRunner().invoke(app, [*args, "--dry-run"])
    shown = " ".join(dry.stderr.split())
    assert dry.exit_code == 0 and "model calls by stage" in shown and "2 done before, 4 to run" in shown
    assert "instruction_following" in shown and "no price for vllm:loopback" in shown


def test_max_usd_with_a_model_the_price_table_does_not_know_is_an_error_naming_it(tmp_path, srv, monkeypatch):
    monkeypatch.setattr(pricing, "_overrides", {})
    prompts, out = _prompts(tmp_path, 4), tmp_path / "out.jsonl"
    for dry_run in (False, True):
        with pytest.raises(ConfigError, match=r"none is known for vllm:loopback \(generation, correctness.*--max-calls"):
            build(prompts, out, max_usd=1.0, dry_run=dry_run, **_options(srv))
    assert srv.requests == [] and not state_dir(out).exists()


def test_max_usd_with_a_set_price_stops_and_goes_on(tmp_path, srv, monkeypatch):
    monkeypatch.setattr(pricing, "_overrides", {})
    pricing.set_price("vllm:loopback", 100.0, 200.0)  # dollars per million tokens; the loopback counts words
    prompts, out = _prompts(tmp_path, 12), tmp_path / "out.jsonl"
    estimate = build(prompts, out, dry_run=True, **_options(srv))
    assert estimate.usd is not None and estimate.usd > 0 and not estimate.unpriced
    budget = 0.5
    first = build(prompts, out, max_usd=budget, **_options(srv))
    assert first.budget_stop and first.budget_stop.startswith(f"--max-usd {budget:g} reached")
    journal = Journal(out)
    try:
        most = max(r["selection"]["cost"]["usd"] for r in journal.records())
    finally:
        journal.close()
    assert budget <= first.cost.usd < budget + most and 0 < first.done_now < 12
    assert estimate.usd >= first.cost.usd * 12 / first.done_now  # the estimate bounds the money
    second = build(prompts, out, max_usd=budget, **_options(srv))
    assert second.done_before == first.done_now and second.done_now > 0
    assert second.build_cost.usd == pytest.approx(first.cost.usd + second.cost.usd)
