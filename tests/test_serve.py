"""`bestofn serve`: the proxy on loopback (uvicorn in a thread, or the real CLI in a subprocess), called with the
official openai SDK, sync, async and streaming; behind it, the loopback protocol server (many calls)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx2
import openai
import pytest

from bestofn.backends.vllm import VLLMServerBackend
from bestofn.records import Selection
from bestofn.apps.serve.server import ServeConfig, check_bind, create_app, is_loopback

REPO = Path(__file__).resolve().parent.parent
ASK = [{"role": "user", "content": "Why is the sky blue?"}]
TOKEN = "tok-3f9a1c77d2e54b08"


@contextlib.contextmanager
def running(app):
    """The app under uvicorn on a free loopback port, in a thread; yields the base URL (…/v1)."""
    import uvicorn

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/v1"
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


@pytest.fixture
def upstream(loopback):
    return VLLMServerBackend("loopback", base_url=loopback.base_url)


@pytest.fixture
def proxy(upstream):
    with running(create_app(model=upstream, judge_model=upstream, cache=False, n=4)) as url:
        yield url


def text_of(sel: dict, k: int = 0) -> str:
    s = Selection.model_validate(sel)
    return s.candidate(s.ranking[k]).text


def test_sync_client_choices_selection_and_options(proxy, loopback):
    client = openai.OpenAI(base_url=proxy, api_key="not-checked-on-loopback")
    response = client.chat.completions.create(model="anything", messages=ASK, n=2,
                                              extra_body={"bestofn": {"n": 5, "panel": "default"}})
    sel = Selection.model_validate(response.bestofn)  # the Selection, in the response's `bestofn` field
    assert len(sel.candidates) == 5 and sel.panel == "default" and response.model == "anything"
    assert [c.message.content for c in response.choices] == [text_of(response.bestofn, k) for k in (0, 1)]
    assert response.usage.total_tokens == sel.cost.prompt_tokens + sel.cost.completion_tokens > 0
    gen = [r.body for r in loopback.chat_requests() if "response_format" not in r.body]
    assert len(gen) == 1 and gen[0]["n"] == 5  # the server's own generator was asked for 5
    # the defaults: n=4 candidates, one choice; request ids echoed in a header
    raw = client.chat.completions.with_raw_response.create(model="m", messages=ASK, extra_headers={"x-request-id": "req-42"})
    assert raw.headers["x-request-id"] == "req-42"
    parsed = raw.parse()
    assert len(parsed.choices) == 1 and len(parsed.bestofn["candidates"]) == 4
    assert parsed.choices[0].message.content == text_of(parsed.bestofn)
    # early stop per request: the first wave clears a threshold of 0 (seeded: the loopback's safety scores are
    # drawn per seed, and an unseeded request's first wave is vetoed about one time in ten)
    early = client.chat.completions.create(model="m", messages=ASK, seed=4,
                                           extra_body={"bestofn": {"n": 8, "accept_threshold": 0.0, "wave_size": 2}})
    report = early.bestofn["stats"]["early_stop"]
    assert report["sampled"] == 2 and report["stopped_early"] and len(early.bestofn["candidates"]) == 2
    assert [m.id for m in client.models.list().data] == ["vllm:loopback"]


def test_an_unseeded_request_uses_seed_0(proxy, loopback):
    """DESIGN part B: the seed defaults to 0, so two unseeded requests draw the same candidates."""
    client = openai.OpenAI(base_url=proxy, api_key="x")
    first, second = (Selection.model_validate(client.chat.completions.create(model="m", messages=ASK).bestofn)
                     for _ in range(2))
    assert [c.text for c in first.candidates] == [c.text for c in second.candidates]
    assert {c.params["seed"] for c in first.candidates} == {0} and all(p.seed == 0 for p in first.pairs)
    gen = [r.body for r in loopback.chat_requests() if "response_format" not in r.body]
    assert [g["seed"] for g in gen] == [0, 0]


def test_sync_stream(proxy):
    client = openai.OpenAI(base_url=proxy, api_key="x")
    stream = client.chat.completions.create(model="m", messages=ASK, stream=True, n=2,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    parts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            parts[choice.index] = parts.get(choice.index, "") + (choice.delta.content or "")
    sel = chunks[-1].bestofn  # the last chunk carries the Selection
    assert [parts[0], parts[1]] == [text_of(sel, 0), text_of(sel, 1)]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop", "stop"]


async def test_async_client_and_stream(proxy):
    client = openai.AsyncOpenAI(base_url=proxy, api_key="x")
    response = await client.chat.completions.create(model="m", messages=ASK, seed=11, temperature=0.5, max_tokens=9)
    sel = Selection.model_validate(response.bestofn)
    assert response.choices[0].message.content == sel.best.text
    assert {c.params["seed"] for c in sel.candidates} == {11} and sel.candidates[0].params["max_tokens"] == 9
    assert sel.candidates[0].params["temperature"] == 0.5
    stream = await client.chat.completions.create(model="m", messages=ASK, stream=True)
    text, last = "", None
    async for chunk in stream:
        text += "".join(c.delta.content or "" for c in chunk.choices)
        last = chunk
    assert text == text_of(last.bestofn)
    await client.close()


def test_stream_errors_arrive_as_an_error_event(proxy, loopback):
    loopback.hook = lambda req: (400, {"error": {"message": "upstream says no", "type": "invalid_request_error"}})
    client = openai.OpenAI(base_url=proxy, api_key="x", max_retries=0)
    with pytest.raises(openai.APIError, match="upstream says no"):
        list(client.chat.completions.create(model="m", messages=ASK, stream=True))
    with pytest.raises(openai.APIStatusError, match="upstream says no") as info:
        client.chat.completions.create(model="m", messages=ASK)
    assert info.value.status_code == 502


def test_token_is_checked_when_set(upstream):
    with running(create_app(model=upstream, judge_model=upstream, cache=False, n=2, token=TOKEN)) as url:
        with pytest.raises(openai.AuthenticationError, match="bearer token"):
            openai.OpenAI(base_url=url, api_key="wrong-token").chat.completions.create(model="m", messages=ASK)
        bare = httpx2.post(f"{url}/chat/completions", json={"model": "m", "messages": ASK})
        assert bare.status_code == 401 and bare.headers["www-authenticate"] == "Bearer"
        assert httpx2.get(url.removesuffix("/v1") + "/health").json() == {"status": "ok"}  # no token needed
        ok = openai.OpenAI(base_url=url, api_key=TOKEN).chat.completions.create(model="m", messages=ASK)
        assert ok.choices[0].message.content


def test_off_loopback_needs_a_token(monkeypatch):
    assert all(is_loopback(h) for h in ("127.0.0.1", "127.8.0.1", "::1", "[::1]", "localhost"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.168.1.20", "10.0.0.1", "example.com"))
    check_bind("127.0.0.1", None)
    check_bind("0.0.0.0", TOKEN)
    with pytest.raises(Exception, match="refusing to listen on 0.0.0.0 without a bearer token"):
        check_bind("0.0.0.0", None)
    env = {k: v for k, v in os.environ.items() if k != "BESTOFN_TOKEN"}
    done = subprocess.run([sys.executable, "-m", "bestofn", "serve", "--host", "0.0.0.0", "--port", "0"],
                          capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
    assert done.returncode != 0 and "refusing to listen on 0.0.0.0" in done.stderr
    assert "Traceback" not in done.stderr


def test_bad_bodies_get_clear_4xx(upstream, loopback):
    app = create_app(ServeConfig(model=upstream, judge_model=upstream, cache=False, n=2, max_body_bytes=4096))
    with running(app) as url:
        post = f"{url}/chat/completions"

        def send(content, **kw):
            return httpx2.post(post, content=content, headers={"content-type": "application/json"}, **kw)

        big = send(json.dumps({"model": "m", "messages": [{"role": "user", "content": "x" * 5000}]}))
        assert big.status_code == 413 and "too large" in big.json()["error"]["message"]
        chunked = send(iter([b'{"model": "m", "messages": [{"role": "user", "content": "', b"y" * 5000, b'"}]}']))
        assert chunked.status_code == 413 and "4096" in chunked.json()["error"]["message"]
        cases = [
            (b"{not json", 400, "not valid JSON"),
            (b"[1, 2]", 400, "must be a JSON object"),
            (json.dumps({"model": "m", "messages": "hello"}).encode(), 422, "messages"),
            (json.dumps({"model": "m", "messages": ASK, "n": 0}).encode(), 422, "n: Input should be greater"),
            (json.dumps({"model": "m", "messages": ASK, "tools": [{"type": "function"}]}).encode(), 400, "tools"),
            (json.dumps({"model": "m", "messages": ASK, "bestofn": {"panel": "../../etc/passwd"}}).encode(), 400,
             "unknown panel"),
            (json.dumps({"model": "m", "messages": ASK, "bestofn": {"n": 999}}).encode(), 422, "bestofn.n"),
            (json.dumps({"model": "m", "messages": ASK, "n": 3, "bestofn": {"n": 2}}).encode(), 400, "only 2 candidates"),
            (json.dumps({"model": "m", "messages": [{"role": "tool", "content": "x"}]}).encode(), 400, "'tool'"),
            (json.dumps({"model": "m", "messages": ASK, "stream": True, "bestofn": {"panel": "nope"}}).encode(), 400,
             "unknown panel"),  # a stream's request errors are a 4xx too, not an event after a 200
        ]
        for body, status, message in cases:
            r = send(body)
            assert r.status_code == status and message in r.json()["error"]["message"], (body, r.text)
        assert loopback.count == 0  # nothing reached the upstream model
        with pytest.raises(openai.BadRequestError, match="stop"):
            openai.OpenAI(base_url=url, api_key="x").chat.completions.create(model="m", messages=ASK, stop=["."])
        assert httpx2.get(f"{url}/nowhere").json()["error"]["code"] == "not_found"


def test_cli_serve_logs_with_request_ids_and_never_a_key(loopback, tmp_path):
    """The real command: uvicorn in a subprocess, a token, an upstream key it must never log or return."""
    upstream_key, client_secret = "sk-upstream-9d8c7b6a5f4e3d2c", "sk-wrong-client-1a2b3c4d5e"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "pairs.jsonl"
    env = {**os.environ, "BESTOFN_API_KEY": upstream_key, "OPENAI_API_KEY": "sk-proj-unused-0011223344556677",
           "BESTOFN_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "bestofn", "serve", "--port", str(port), "--model", "vllm:loopback",
           "--judge-model", "vllm:loopback", "--base-url", loopback.base_url, "-n", "3", "--no-cache",
           "--log", str(log), "--seed", "2"]
    errors = (tmp_path / "stderr.log").open("w+")  # a file, not a pipe: a full pipe would block the server
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, (tmp_path / "stderr.log").read_text()
            with contextlib.suppress(httpx2.TransportError):
                if httpx2.get(f"{base}/health").status_code == 200:
                    break
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.1)
        client = openai.OpenAI(base_url=f"{base}/v1", api_key=TOKEN, max_retries=0)
        good = client.chat.completions.with_raw_response.create(model="m", messages=ASK)
        good_id = good.headers["x-request-id"]
        assert good.parse().choices[0].message.content
        assert any(r.headers.get("authorization") == f"Bearer {upstream_key}" for r in loopback.chat_requests())
        # an upstream that echoes the key it was sent (as OpenAI's 401 does, partly)
        loopback.hook = lambda req: (401, {"error": {"message": f"Incorrect API key provided: {upstream_key}",
                                                     "type": "invalid_request_error", "code": "invalid_api_key"}})
        with pytest.raises(openai.APIStatusError) as info:
            client.chat.completions.create(model="m", messages=ASK)
        assert info.value.status_code == 502 and upstream_key not in str(info.value.body)
        assert "[redacted]" in info.value.message
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"{base}/v1", api_key=client_secret, max_retries=0).models.list()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
        errors.close()
    stderr = (tmp_path / "stderr.log").read_text()
    lines = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    requests = [x for x in lines if x["event"] == "request"]
    assert any(x["request_id"] == good_id and x["status"] == 200 and x["n"] == 3 for x in requests)
    assert {x["status"] for x in requests} >= {200, 401, 502}
    for secret in (upstream_key, client_secret, TOKEN, "sk-proj-unused-0011223344556677"):
        assert secret not in stderr
    assert log.read_text().strip(), "the pairs were not flushed on exit"
