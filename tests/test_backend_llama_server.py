"""`vllm:` against a REAL llama-cpp-python server over the embedded model (tests/llama_server.py): the CLI end
to end, n fan-out, and the schema-flavour fallback. Few, short calls: the server answers one at a time."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import openai
import pytest
from pydantic import BaseModel, Field

from bestofn.backends.base import SamplingParams
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.records import Message

MSGS = [Message(role="user", content="Name one colour of the rainbow.")]


class Pick(BaseModel):
    colour: str
    confidence: int = Field(ge=0, le=100)


PANEL = """
name = "one-judge"
aggregate = "weighted_mean"
quorum = 1
pair_margin = 0.0

[[judge]]
name = "correctness"
kind = "rubric"
rubric = "correctness.v1"
scale = [1, 10]
weight = 1.0
"""


def test_cli_run_end_to_end(llama_server, tmp_path):
    """`bestofn run --model vllm:smol --base-url URL -n 2 --max-tokens 48 --json`, judged through the same server
    (a one-judge panel keeps it to ~4 calls on a one-request-at-a-time server)."""
    panel = tmp_path / "one.toml"
    panel.write_text(PANEL)
    env = {**os.environ, "BESTOFN_CACHE_DIR": str(tmp_path / "cache")}
    cmd = [sys.executable, "-m", "bestofn", "run", "Say hello in French.", "--model", "vllm:smol",
           "--judge-model", "vllm:smol", "--base-url", llama_server, "-n", "2", "--max-tokens", "48",
           "--judge-max-tokens", "128", "--panel", str(panel), "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    sel = json.loads(done.stdout)  # stdout holds nothing but the JSON
    assert [c["model"] for c in sel["candidates"]] == ["vllm:smol", "vllm:smol"]
    assert all(c["text"].strip() and c["usage"]["prompt_tokens"] > 0 for c in sel["candidates"])
    unique = {c["id"] for c in sel["candidates"]}
    assert len(sel["verdicts"]) == len(unique) and {v["model"] for v in sel["verdicts"]} == {"vllm:smol"}
    assert sel["verdicts"][0]["status"] in {"ok", "invalid"}  # a model reply, parsed (never an HTTP error)
    assert sel["cost"]["calls"] >= 2 + len(unique) and sel["cost"]["usd"] is None


async def test_fan_out_and_flavour_detection(llama_server):
    b = VLLMServerBackend("smol", base_url=llama_server)
    out = await b.sample(MSGS, SamplingParams(n=3, max_tokens=16, temperature=1.0, seed=1))
    assert await b.resolve() == "llama-cpp" and b.serial
    assert len(out) == 3 and len({c.text for c in out}) >= 2  # seeds 1, 2, 3: not one answer copied thrice
    assert all(c.usage.completion_tokens > 0 for c in out)


async def test_schema_fallback_on_the_real_server(llama_server):
    raw = openai.AsyncOpenAI(base_url=llama_server, api_key="x", max_retries=0)
    fmt = {"type": "json_schema", "json_schema": {"name": "Pick", "schema": Pick.model_json_schema()}}
    with pytest.raises(openai.InternalServerError):  # what the server really does with json_schema
        await raw.chat.completions.create(model="smol", messages=[m.model_dump() for m in MSGS], max_tokens=8,
                                          response_format=fmt)
    one = await raw.chat.completions.create(model="smol", messages=[m.model_dump() for m in MSGS], max_tokens=8, n=3)
    assert len(one.choices) == 1  # and what it does with n=3
    await raw.close()
    # a backend told nothing about the server (generic flavour) finds JSON mode by itself
    b = VLLMServerBackend("smol", base_url=llama_server, flavour="openai")
    (out,) = await b.sample(MSGS, SamplingParams(max_tokens=48, temperature=0.0, json_schema=Pick.model_json_schema()))
    assert b._json == "json_object"
    if out.finish_reason == "stop":
        assert Pick.model_validate_json(out.text).colour
