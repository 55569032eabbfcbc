"""`bestofn build` survives SIGKILL at any moment: run it as a subprocess against the loopback server, kill it
at random points, resume; the final rows equal an uninterrupted run's, none twice; a finished build makes
zero calls (counted at the server). Also: failed prompts are retried, a damaged output file is repaired."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bestofn.apps.build import BuildError, Columns, build
from bestofn.apps.cli.main import app
from tests.loopback import LoopbackServer, error_body

PROMPTS = 24
N = 3


@pytest.fixture
def prompts(ifeval_prompts) -> Path:
    return ifeval_prompts(PROMPTS)


def _cmd(prompts: Path, out: Path, srv: LoopbackServer, *extra: str) -> list[str]:
    return [sys.executable, "-m", "bestofn", "build", str(prompts), "-o", str(out), "--id-column", "key",
            "--model", "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", srv.base_url,
            "-n", str(N), "--max-tokens", "32", "--concurrency", "3", "--json", *extra]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "BESTOFN_CACHE_DIR": str(cache), "BESTOFN_SERVER_FLAVOUR": "vllm"}


def _run(cmd: list[str], cache: Path) -> tuple[int, dict]:
    proc = subprocess.run(cmd, env=_env(cache), capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_text().splitlines()]


def test_sigkill_at_random_points_then_resume_gives_exactly_the_uninterrupted_rows(tmp_path, prompts):
    rng = random.Random(20240611)
    with LoopbackServer(latency=0.01, flavour="vllm") as srv:
        reference = tmp_path / "reference.jsonl"
        code, ref = _run(_cmd(prompts, reference, srv), tmp_path / "cache-ref")
        assert code == 0 and ref["done_now"] == PROMPTS and ref["rows"] > 0
        total_calls = srv.count
        ref_ids = _ids(reference)

        out, cache = tmp_path / "out.jsonl", tmp_path / "cache"
        partial = kills = 0
        for attempt in range(5):
            start = srv.count
            proc = subprocess.Popen(_cmd(prompts, out, srv), env=_env(cache), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            if attempt < 4:  # after a random number of calls (mid-prompt, mid-commit, ...)
                target = start + rng.randint(1, max(2, total_calls // 6))
                while proc.poll() is None and srv.count < target:
                    time.sleep(0.002)
            else:  # at a random moment: start-up, the final rewrite, or anywhere between
                deadline = time.monotonic() + rng.uniform(0.2, 3.0)
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(30)
            if out.exists():
                lines = out.read_text().splitlines()
                if 0 < len(lines) < len(ref_ids):
                    partial += 1
        assert kills >= 4
        assert partial >= 1, "no kill left partial output behind"

        code, final = _run(_cmd(prompts, out, srv), cache)
        assert code == 0
        assert final["done_before"] + final["done_now"] == PROMPTS and final["done_before"] > 0
        ids = _ids(out)
        assert len(ids) == len(set(ids))  # no duplicates
        assert set(ids) == set(ref_ids)  # none lost
        assert out.read_bytes() == reference.read_bytes()  # same rows, same order, same bytes

        before = srv.count
        code, again = _run(_cmd(prompts, out, srv), cache)
        assert code == 0 and srv.count == before  # a finished build makes zero calls
        assert again["done_before"] == PROMPTS and again["done_now"] == 0 and again["cost"]["calls"] == 0
        assert out.read_bytes() == reference.read_bytes()


def _options(srv: LoopbackServer, **extra) -> dict:
    return dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url, n=N, max_tokens=32,
                concurrency=3, columns=Columns(id="key"), progress=False, **extra)


def test_damaged_output_is_repaired_from_the_journal_without_calls(tmp_path, prompts):
    with LoopbackServer(flavour="vllm") as srv:
        out = tmp_path / "out.jsonl"
        assert build(prompts, out, **_options(srv)).done_now == PROMPTS
        good = out.read_bytes()
        lines = good.decode().splitlines(keepends=True)
        out.write_text("".join(lines[2:]) + lines[0] + lines[1][:17])  # rows lost, one twice, a torn line
        before = srv.count
        summary = build(prompts, out, **_options(srv))
        assert srv.count == before and summary.done_before == PROMPTS
        assert out.read_bytes() == good and summary.rows == len(lines)


def test_failed_prompts_are_reported_and_retried_by_the_next_run(tmp_path, prompts):
    sixth = json.loads(prompts.read_text().splitlines()[5])
    marker = sixth["prompt"][:40]

    def refuse(req):  # every call about one prompt fails (401 is not retried by the SDK)
        return (401, error_body(401, "no")) if marker in json.dumps(req.body) else None

    with LoopbackServer(flavour="vllm") as srv:
        out = tmp_path / "out.jsonl"
        srv.hook = refuse
        first = build(prompts, out, **_options(srv))
        assert first.failed == 1 and first.done_now == PROMPTS - 1
        assert first.failures[0].startswith(f"{sixth['key']} (line 6):")
        args = ["build", str(prompts), "-o", str(out), "--id-column", "key", "--model", "vllm:loopback",
                "--judge-model", "vllm:loopback", "--base-url", srv.base_url, "-n", str(N), "--max-tokens", "32"]
        result = CliRunner().invoke(app, [*args, "--json"])
        assert result.exit_code == 1 and json.loads(result.stdout)["failed"] == 1  # retried, failed again
        with pytest.raises(BuildError) as stop:
            build(prompts, tmp_path / "stop.jsonl", **{**_options(srv), "concurrency": 1}, on_error="stop")
        assert stop.value.summary.done_now == 5  # the five before it (from the cache), then stop
        assert len(_ids(tmp_path / "stop.jsonl")) == stop.value.summary.rows > 0

        srv.hook = None
        before = srv.count
        second = build(prompts, out, **_options(srv))
        assert second.done_now == 1 and second.done_before == PROMPTS - 1 and second.failed == 0
        assert 0 < srv.count - before <= 1 + 4 * N  # only the failed prompt's: one generation, 4 judges x N
        assert CliRunner().invoke(app, args).exit_code == 0


def test_settings_are_checked_on_resume_and_one_build_per_output(tmp_path, prompts):
    from bestofn.apps.build.journal import Journal
    from bestofn.errors import ConfigError

    with LoopbackServer(flavour="vllm") as srv:
        out = tmp_path / "out.jsonl"
        first = build(prompts, out, **_options(srv))
        with pytest.raises(ConfigError, match=r"other settings \(n: 3 -> 2\)"):
            build(prompts, out, **{**_options(srv), "n": 2})
        before = srv.count
        kto = build(prompts, out, **_options(srv), format="kto")  # the format is not a setting: re-export
        assert srv.count == before and kto.done_before == PROMPTS
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert len(rows) == kto.rows == 2 * first.pairs and {r["label"] for r in rows} == {True, False}
        held = Journal(out)  # as if another build were running on this output
        try:
            with pytest.raises(ConfigError, match="another build is writing"):
                build(prompts, out, **_options(srv))
        finally:
            held.close()


def test_a_resumed_build_repairs_the_output_before_its_first_call_and_never_holds_a_row_twice(tmp_path, prompts):
    """Every other prompt fails in the first run (a crash's unfinished prompts); then the output is damaged the way
    a kill leaves it (rows lost, a row twice, a torn line). At every call of the rerun, the output already holds
    each finished prompt's rows once, whole and in input order (then the new ones appended); at the end it is
    byte for byte an uninterrupted build's."""
    rows = [json.loads(line) for line in prompts.read_text().splitlines()]
    markers = [r["prompt"][:40] for r in rows[1::2]]

    def refuse(req):
        sent = " ".join(str(m.get("content")) for m in (req.body or {}).get("messages", []))
        return (401, error_body(401, "no")) if any(m in sent for m in markers) else None

    with LoopbackServer(flavour="vllm") as srv:
        out = tmp_path / "out.jsonl"
        srv.hook = refuse
        first = build(prompts, out, **_options(srv))
        assert first.done_now == PROMPTS // 2 and first.failed == PROMPTS // 2
        finished = out.read_bytes()
        lines = finished.decode().splitlines(keepends=True)
        assert len(lines) >= 3
        out.write_text(lines[1] + lines[0] + lines[0] + "".join(lines[3:]) + lines[2][:25])

        seen_at_calls: list[list[str]] = []

        def watch(req):
            seen_at_calls.append(out.read_text().splitlines(keepends=True))
            return None

        srv.hook = watch
        second = build(prompts, out, **_options(srv))
        assert second.done_before == PROMPTS // 2 and second.done_now == PROMPTS // 2 and seen_at_calls
        assert "".join(seen_at_calls[0]) == finished.decode()  # repaired before the first call
        for snapshot in seen_at_calls:
            assert snapshot[: len(lines)] == lines  # the finished rows stay first, in input order
            assert all(line.endswith("\n") for line in snapshot)  # no torn line
            ids = [json.loads(line)["id"] for line in snapshot]
            assert len(ids) == len(set(ids))  # no row twice, at any moment
        assert max(map(len, seen_at_calls)) > len(lines)  # rows are appended while the build runs

        reference = tmp_path / "reference.jsonl"
        build(prompts, reference, **_options(srv))  # uninterrupted (from the cache)
        assert out.read_bytes() == reference.read_bytes()


def test_a_prompt_whose_judging_failed_midway_is_not_finished_and_the_rerun_completes_it(tmp_path, prompts):
    """One judge call of one prompt fails (its other calls succeed): the prompt is not committed with a partial
    verdict set; the rerun judges it again, and the output is an uninterrupted build's."""
    sixth = json.loads(prompts.read_text().splitlines()[5])
    refused: list[int] = []

    def refuse_one_judge_call(req):
        body = req.body or {}
        sent = " ".join(str(m.get("content")) for m in body.get("messages", []))
        if body.get("response_format") and sixth["prompt"][:40] in sent and not refused:
            refused.append(1)
            return 401, error_body(401, "no")
        return None

    with LoopbackServer(flavour="vllm") as srv:
        out = tmp_path / "out.jsonl"
        srv.hook = refuse_one_judge_call
        first = build(prompts, out, **_options(srv))
        assert refused and first.failed == 1 and first.failures[0].startswith(f"{sixth['key']} (line 6): judge ")
        srv.hook = None
        second = build(prompts, out, **_options(srv))
        assert second.done_now == 1 and second.failed == 0
        reference = tmp_path / "reference.jsonl"
        build(prompts, reference, **_options(srv))
        assert out.read_bytes() == reference.read_bytes()
