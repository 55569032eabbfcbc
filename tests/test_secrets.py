"""API keys never appear in anything bestofn writes: runs with dummy keys against the loopback server (one that
also echoes the key back in its errors, as some servers do), then every output is searched byte for byte: stdout,
stderr, the preference log, the cache, build outputs, journals and summaries, the proxy's logs and replies.
The proxy refuses to listen off loopback without a token, and refuses unauthenticated calls when it has one."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx2

from tests.loopback import LoopbackServer, error_body

REPO = Path(__file__).resolve().parent.parent
OPENAI_KEY = "sk-test-SECRET123"
SERVER_KEY = "bestofn-test-SECRET456"  # BESTOFN_API_KEY: the vllm: backend's key
TOKEN = "tok-test-SECRET789abc"  # the proxy's bearer token
SECRETS = (OPENAI_KEY, SERVER_KEY, TOKEN, "SECRET123", "SECRET456", "SECRET789")


def env_for(srv: LoopbackServer, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("BESTOFN_TOKEN",)}
    env.update(OPENAI_API_KEY=OPENAI_KEY, OPENAI_BASE_URL=srv.base_url, BESTOFN_API_KEY=SERVER_KEY,
               BESTOFN_CACHE_DIR=str(tmp / "cache"), BESTOFN_SERVER_FLAVOUR="vllm")
    return env


def bestofn(env: dict[str, str], *args: str, outputs: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "bestofn", *args], env=env, capture_output=True, text=True,
                          timeout=180, cwd=REPO)
    outputs += [done.stdout, done.stderr]
    return done


def cli_in_process(monkeypatch, capsys, *args: str, outputs: list[str]) -> tuple[int, str, str]:
    """`bestofn ARGS` through the CLI's own entry point (its error line included), in this process."""
    from bestofn.apps.cli import main as cli

    monkeypatch.setattr(sys, "argv", ["bestofn", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    outputs += [out, err]
    return code, out, err


def echo_key(req):
    """A server that echoes the credentials it was sent in its error message."""
    return 401, error_body(401, f"Incorrect API key provided: {req.headers.get('authorization', '')}")


def assert_nowhere(tmp: Path, outputs: list[str]) -> int:
    files = [p for p in tmp.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        for secret in SECRETS:
            assert secret.encode() not in data, f"{secret} in {path}"
    for text in outputs:
        for secret in SECRETS:
            assert secret not in text, text[-2000:]
    return len(files)


def test_no_key_in_runs_builds_caches_exports_or_errors(tmp_path, data_dir, monkeypatch, capsys):
    with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(3)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outputs: list[str] = []
    with LoopbackServer(flavour="vllm") as srv:
        for name, value in env_for(srv, tmp_path).items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("BESTOFN_TOKEN", raising=False)

        def bestofn(*args: str, outputs: list[str]):
            code, out, err = cli_in_process(monkeypatch, capsys, *args, outputs=outputs)
            return subprocess.CompletedProcess(args, code, out, err)
        openai_args = ["--model", "openai:loopback", "--judge-model", "openai:loopback", "-n", "2",
                       "--max-tokens", "24"]
        vllm_args = ["--model", "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", srv.base_url,
                     "-n", "2", "--max-tokens", "24"]
        ok = bestofn("run", "Why is the sky blue?", *openai_args, "--json", "--log", str(tmp_path / "pairs.jsonl"),
                     outputs=outputs)
        assert ok.returncode == 0, ok.stderr
        done = bestofn("build", str(prompts), "-o", str(tmp_path / "full.parquet"), "--id-column", "key",
                       "--format", "full", *openai_args, "--json", outputs=outputs)  # every verdict, every reason
        assert done.returncode == 0, done.stderr
        # the key was really sent, so its absence below means something
        assert {r.headers.get("authorization") for r in srv.chat_requests()} == {f"Bearer {OPENAI_KEY}"}

        # a server that echoes the key back: in the CLI's error line, verdict reasons, build failures and journals
        srv.hook = echo_key
        failed = bestofn("run", "Why is the sky blue now?", *openai_args, outputs=outputs)
        assert failed.returncode != 0 and "authentication failed (401)" in failed.stderr
        assert "[redacted]" in failed.stderr
        failed = bestofn("run", "And now?", *vllm_args, "--json", outputs=outputs)
        assert failed.returncode != 0 and "[redacted]" in failed.stderr
        assert f"Bearer {SERVER_KEY}" in {r.headers.get("authorization") for r in srv.chat_requests()}
        srv.hook = lambda req: echo_key(req) if (req.body or {}).get("response_format") else None  # judges only
        judged = bestofn("run", "Why is grass green?", *openai_args, "--json", outputs=outputs)
        reasons = [v["reason"] for v in json.loads(judged.stdout)["verdicts"]] if judged.stdout.strip() else []
        assert reasons and all("[redacted]" in r for r in reasons), judged.stderr
        srv.hook = echo_key
        broken = bestofn("build", str(prompts), "-o", str(tmp_path / "failed.jsonl"), "--id-column", "key",
                         *openai_args, "--json", "--no-cache", outputs=outputs)
        summary = json.loads(broken.stdout)
        assert broken.returncode == 1 and summary["failed"] == 3
        assert all("[redacted]" in f for f in summary["failures"])
    files = assert_nowhere(tmp_path, outputs)
    assert files >= 4  # log, cache, outputs and their journals were all searched


def test_the_proxy_never_logs_or_returns_a_key_and_refuses_unauthenticated_use(tmp_path):
    outputs: list[str] = []
    with LoopbackServer(flavour="vllm") as srv:
        env = {**env_for(srv, tmp_path), "BESTOFN_TOKEN": TOKEN}
        refused = bestofn({k: v for k, v in env.items() if k != "BESTOFN_TOKEN"}, "serve", "--host", "0.0.0.0",
                          "--port", "0", outputs=outputs)
        assert refused.returncode != 0 and "refusing to listen on 0.0.0.0 without a bearer token" in refused.stderr
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        log_path = tmp_path / "serve.stderr"
        cmd = [sys.executable, "-m", "bestofn", "serve", "--port", str(port), "--model", "vllm:loopback",
               "--judge-model", "vllm:loopback", "--base-url", srv.base_url, "-n", "2", "--log",
               str(tmp_path / "proxy-pairs.jsonl"), "--log-level", "debug"]
        with log_path.open("w") as errors:
            proc = subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=errors)
            base = f"http://127.0.0.1:{port}"
            try:
                deadline = time.monotonic() + 60
                while True:
                    assert proc.poll() is None, log_path.read_text()
                    with contextlib.suppress(httpx2.TransportError):
                        if httpx2.get(f"{base}/health").status_code == 200:
                            break
                    assert time.monotonic() < deadline
                    time.sleep(0.1)
                body = {"model": "m", "messages": [{"role": "user", "content": "Why is the sky blue?"}]}
                bare = httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=60)
                assert bare.status_code == 401
                wrong = httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=60,
                                    headers={"authorization": f"Bearer {OPENAI_KEY}"})
                assert wrong.status_code == 401
                good = httpx2.post(f"{base}/v1/chat/completions", json=body, timeout=60,
                                   headers={"authorization": f"Bearer {TOKEN}"})
                assert good.status_code == 200, good.text
                srv.hook = echo_key
                # another question: the same one would be answered from the call cache (seed 0 by default)
                fresh = {**body, "messages": [{"role": "user", "content": "Why is the sea blue?"}]}
                echoed = httpx2.post(f"{base}/v1/chat/completions", json=fresh, timeout=60,
                                     headers={"authorization": f"Bearer {TOKEN}"})
                assert echoed.status_code == 502 and "[redacted]" in echoed.text
                outputs += [bare.text, wrong.text, good.text, echoed.text]
                assert f"Bearer {SERVER_KEY}" in {r.headers.get("authorization") for r in srv.chat_requests()}
            finally:
                proc.send_signal(signal.SIGINT)
                proc.wait(30)
    assert log_path.read_text().strip()  # it did log
    assert_nowhere(tmp_path, outputs)
