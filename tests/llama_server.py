"""A real llama-cpp-python server (`python -m llama_cpp.server`) over the embedded SmolLM2 model, on loopback.

The session-scoped fixture `llama_server` starts it once on a free port (n_ctx 2048), waits for GET /v1/models
and yields its base URL (`http://127.0.0.1:PORT/v1`); the process is stopped at the end of the session. It
answers one request at a time, returns ONE choice whatever `n` is, and answers a `response_format` of type
json_schema with a 500 (it wants {"type": "json_object", "schema": ...}): what `vllm:` must cope with.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# `python -m llama_cpp.server`, with its models made by the local backend's Llama class, so that the server loads
# them as bestofn does: without llama.cpp's extra buffer types unless BESTOFN_LOCAL_EXTRA_BUFFERS=on (AMX hosts
# crash in that path otherwise). llama_cpp.server.model makes each model as `llama_cpp.Llama(...)`.
SERVER = ("import runpy, llama_cpp; from bestofn.backends.local import llama_class; llama_cpp.Llama = llama_class(); "
          "runpy.run_module('llama_cpp.server', run_name='__main__', alter_sys=True)")


@pytest.fixture(scope="session")
def llama_server():
    from bestofn.backends.local import default_model_path

    port = free_port()
    cmd = [sys.executable, "-c", SERVER, "--model", str(default_model_path()), "--model_alias", "smol",
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048", "--verbose", "False",
           # one thread: on a busy 2-core machine llama.cpp's two-thread prefill spins at its barrier (7x slower)
           "--n_threads", "1", "--n_threads_batch", "1"]
    log = tempfile.TemporaryFile(mode="w+")  # not a pipe: the access log would fill it and block the server
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log, text=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                log.seek(0)
                raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}: {log.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                    assert json.load(r)["data"]
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError("llama_cpp.server did not answer /v1/models within 90 s") from None
                time.sleep(0.25)
        yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
