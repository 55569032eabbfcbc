"""Backend registry: a spec string (`local`, `local:PATH.gguf`, `openai:MODEL`, ...) names a backend.

SDKs are imported only when their backend is used; third parties add backends through the
`bestofn.backends` entry point group (prefix -> `module:Class`, a Backend subclass called as `Class(model)`).
"""

from __future__ import annotations

import os

from bestofn.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from bestofn.registry import Registry

__all__ = ["BACKENDS", "Backend", "Completion", "SamplingParams", "TokenLogprob", "load_backend", "register_backend",
           "split_spec"]

#: spec prefix -> Backend class
BACKENDS: Registry[type[Backend]] = Registry("backend", "bestofn.backends", {
    "local": "bestofn.backends.local:LocalBackend",
    "openai": "bestofn.backends.openai:OpenAIBackend",
    "vllm": "bestofn.backends.vllm:VLLMServerBackend",
    "vllm-offline": "bestofn.backends.vllm_offline:VLLMOfflineBackend",
    "anthropic": "bestofn.backends.anthropic:AnthropicBackend",
})

_instances: dict[tuple[str, str | None], Backend] = {}


def register_backend(kind: str, target: str | type[Backend]) -> None:
    """Register a backend class (or `module:Class`) under a spec prefix, e.g. for tests or plugins."""
    BACKENDS.register(kind, target)
    for key in [k for k in _instances if split_spec(k[0])[0] == kind]:
        del _instances[key]


def split_spec(spec: str) -> tuple[str, str]:
    kind, _, model = spec.partition(":")
    return kind.strip(), model.strip()


def load_backend(spec: str | Backend, base_url: str | None = None) -> Backend:
    """Return the (process-wide, shared) backend for a spec string; a Backend instance is returned as is."""
    if isinstance(spec, Backend):
        return spec
    kind, model = split_spec(spec)
    if kind == "vllm":
        base_url = base_url or os.environ.get("BESTOFN_BASE_URL")
    key = (spec, base_url)
    if key in _instances:
        return _instances[key]
    cls = BACKENDS.load(kind, where=f"model spec {spec!r}: ")
    backend = cls(model, base_url=base_url) if kind == "vllm" else cls(model)  # type: ignore[call-arg]
    backend.spec = spec
    _instances[key] = backend
    return backend
