"""The API path's shortcuts (issue 20) do what the long way does.

- The TLS context of the remote backends' HTTP clients is built once per process and per SSL_CERT_FILE /
  SSL_CERT_DIR setting: loading the CA certificates costs tens of milliseconds (half a second on a busy
  machine), and a client is made per backend and event loop (the sync `select` runs one loop per call).
- `vllm:`'s one-sample call (every judge call) skips the sample stream: the same request, the same reply.
- A judge's reply model (and its JSON schema) is made once per scale or criteria, though judges are built per
  selection.
"""

from __future__ import annotations

import asyncio
import os
import ssl

import httpx2
import pytest

from bestofn.backends import retry_after
from bestofn.backends.base import SamplingParams
from bestofn.backends.limits import collect
from bestofn.backends.retry_after import capped_http_client
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.records import Message
from tests.loopback import LoopbackServer

SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 10}},
          "required": ["score"], "additionalProperties": False}


@pytest.fixture
def fresh_contexts(monkeypatch):
    """Count the TLS contexts built from the certificates (httpx2's own default path included)."""
    import httpx2._transports.default as transports

    built = []
    real = httpx2.create_ssl_context

    def counting(verify=True, *args, **kwargs):
        if verify is True:
            built.append(os.environ.get("SSL_CERT_FILE"))
        return real(verify, *args, **kwargs)

    monkeypatch.setattr(httpx2, "create_ssl_context", counting)
    monkeypatch.setattr(transports, "create_ssl_context", counting)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    forget = getattr(retry_after._tls_context, "cache_clear", lambda: None)
    forget()
    yield built
    forget()


@pytest.mark.parametrize("sdk_name", ["openai", "anthropic"])
def test_clients_share_one_tls_context_per_certificate_setting(fresh_contexts, monkeypatch, sdk_name):
    sdk = pytest.importorskip(sdk_name)
    clients = [capped_http_client(sdk) for _ in range(3)]
    assert all(isinstance(c, httpx2.AsyncClient) for c in clients)
    assert fresh_contexts == [None]  # one context for the three clients, none built by the clients themselves
    cafile = ssl.get_default_verify_paths().openssl_cafile
    if not os.path.isfile(cafile):
        pytest.skip(f"no CA file at {cafile}")
    monkeypatch.setenv("SSL_CERT_FILE", cafile)
    capped_http_client(sdk)
    capped_http_client(sdk)
    assert fresh_contexts == [None, cafile]  # a changed setting gets its own context, made once


@pytest.mark.parametrize("flavour", ["vllm", "llama-cpp", "llama-server", "openai"])
@pytest.mark.parametrize("schema", [None, SCHEMA], ids=["text", "json"])
def test_one_sample_call_is_the_streams_request_and_reply(flavour, schema):
    """`sample(n=1)` against the n=1 path of `sample_stream`, each on a fresh backend (the `openai` flavour learns
    its JSON mode from the first call): the server sees the same requests and the replies are the same."""
    messages = [Message(role="system", content="Grade it."), Message(role="user", content="Why is the sky blue?")]
    params = SamplingParams(n=1, temperature=0.3, max_tokens=24, seed=7, json_schema=schema, top_logprobs=2)
    with LoopbackServer(flavour=flavour) as srv:
        def backend() -> VLLMServerBackend:
            return VLLMServerBackend("m", base_url=srv.base_url, flavour=flavour if flavour != "openai" else "auto")

        async def both():
            short = await backend().sample(messages, params)
            first = len(srv.requests)
            long = await collect(backend().sample_stream(messages, params), 1)
            return short, first, long

        short, first, long = asyncio.run(both())
        shown = [(r.method, r.path, r.body) for r in srv.requests]
    assert shown[:first] == shown[first:] and any(path.endswith("/chat/completions") for _, path, _ in shown)
    assert [c.model_dump(exclude={"latency_s"}) for c in short] == [c.model_dump(exclude={"latency_s"}) for c in long]


def test_judges_built_per_selection_reuse_their_output_models():
    """Judges are built per selection (per proxy request, per build prompt); their reply models, and so the JSON
    schemas made from them, are made once per scale or criteria, not per selection."""
    from bestofn.config.panel import load_panel
    from bestofn.judging import build_judges

    for name in ("default", "compact"):
        first, again = (build_judges(load_panel(name), lambda cfg: None) for _ in range(2))
        assert [j.output_model for j in first] == [j.output_model for j in again]
        assert all(a.output_model is b.output_model for a, b in zip(first, again))
