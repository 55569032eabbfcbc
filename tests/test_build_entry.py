"""`bestofn.build(...)` as a new user calls it: from a notebook (inside a running event loop), and with a Backend
instance for `model` (as `select` and `wrap` take one). Over the loopback protocol server."""

from __future__ import annotations

import json

from bestofn.backends.vllm import VLLMServerBackend
from bestofn.apps.build import build
from bestofn.apps.build.journal import Journal

PROMPTS = ["Why is the sky blue?", "Name one planet of the solar system."]


def _prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS), encoding="utf-8")
    return path


async def test_build_works_inside_a_running_event_loop(loopback, tmp_path):
    """A Jupyter cell calling the sync `build`: an event loop is already running in this thread."""
    out = tmp_path / "pairs.jsonl"
    summary = build(_prompts(tmp_path), out, n=2, model="vllm:loopback", judge_model="vllm:loopback",
                    base_url=loopback.base_url, cache=False, progress=False, pair_margin=0.0, strategy="all-pairs")
    assert summary.done_now == len(PROMPTS) and summary.failed == 0
    assert summary.rows == len(out.read_text(encoding="utf-8").splitlines())


def test_build_takes_a_backend_instance_keyed_by_its_spec(loopback, tmp_path):
    backend = VLLMServerBackend("loopback", base_url=loopback.base_url)
    out = tmp_path / "pairs.jsonl"
    options = dict(n=2, model=backend, judge_model=backend, cache=False, progress=False, pair_margin=0.0,
                   strategy="all-pairs", format="full")
    summary = build(_prompts(tmp_path), out, **options)
    assert summary.done_now == len(PROMPTS) and summary.failed == 0
    rows = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert rows and all(r["generator"] == "vllm:loopback" for r in rows)
    journal = Journal(out)
    try:
        settings = json.loads(journal.conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()[0])
    finally:
        journal.close()
    assert settings["model"] == settings["judge_model"] == "vllm:loopback"
    # a rerun with another instance of the same spec resumes: the settings match, no model is called
    calls = loopback.count
    twin = VLLMServerBackend("loopback", base_url=loopback.base_url)
    again = build(_prompts(tmp_path), out, **{**options, "model": twin})
    assert again.done_before == len(PROMPTS) and again.done_now == 0 and loopback.count == calls
