"""The remote backends (`openai:`, `vllm:`, `anthropic:`) take one set of settings, with one set of defaults
(bestofn.backends.limits.RemoteBackend), and refuse a setting they do not know."""

from __future__ import annotations

import pytest

from bestofn.backends.anthropic import AnthropicBackend
from bestofn.backends.limits import DEFAULT_CONCURRENCY, DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, RemoteBackend
from bestofn.backends.openai import OpenAIBackend
from bestofn.backends.vllm import VLLMServerBackend

URL = "http://127.0.0.1:9/v1"
REMOTES = [(OpenAIBackend, {}), (VLLMServerBackend, {"flavour": "vllm", "base_url": URL}), (AnthropicBackend, {})]


@pytest.mark.parametrize(("cls", "own"), REMOTES, ids=lambda x: getattr(x, "prefix", ""))
def test_every_remote_backend_takes_the_shared_settings(cls, own, monkeypatch):
    monkeypatch.delenv("BESTOFN_CONCURRENCY", raising=False)
    monkeypatch.delenv("BESTOFN_RPM", raising=False)
    plain = cls("m", **own)
    assert isinstance(plain, RemoteBackend) and plain.spec == f"{cls.prefix}:m" and plain.model == "m"
    assert (plain.max_retries, plain.timeout, plain.price, plain.limits.concurrency, plain.limits.rpm) == \
        (DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, None, DEFAULT_CONCURRENCY, None)
    tuned = cls("m", **{"base_url": URL, **own}, concurrency=5, rpm=120, max_retries=1, timeout=7.5, price=(1.0, 2.0))
    assert (tuned.base_url, tuned.max_retries, tuned.timeout, tuned.price, tuned.limits.concurrency,
            tuned.limits.rpm) == (URL, 1, 7.5, (1.0, 2.0), 5, 120)
    with pytest.raises(TypeError, match="timout"):
        cls("m", **own, timout=3)  # a misspelt setting is an error, never silently the default
