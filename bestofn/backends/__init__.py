"""Backend registry: a spec string (`local`, `local:PATH.gguf`, `openai:MODEL`, ...) names a backend.

SDKs are imported only when their backend is used; third parties add backends through the
`bestofn.backends` entry point group (name -> `module:Class`).
"""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

from bestofn.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from bestofn.errors import ConfigError

__all__ = ["Backend", "Completion", "SamplingParams", "TokenLogprob", "load_backend", "register_backend", "split_spec"]

# prefix -> "module:Class"
BUILTIN = {
    "local": "bestofn.backends.local:LocalBackend",
    "openai": "bestofn.backends.openai:OpenAIBackend",
    "vllm": "bestofn.backends.vllm:VLLMServerBackend",
    "vllm-offline": "bestofn.backends.vllm_offline:VLLMOfflineBackend",
    "anthropic": "bestofn.backends.anthropic:AnthropicBackend",
}

_instances: dict[tuple[str, str | None], Backend] = {}
_registered: dict[str, str] = {}


def register_backend(kind: str, target: str) -> None:
    """Register a backend class (`module:Class`) under a spec prefix, e.g. for tests or plugins."""
    _registered[kind] = target
    for key in [k for k in _instances if split_spec(k[0])[0] == kind]:
        del _instances[key]


def split_spec(spec: str) -> tuple[str, str]:
    kind, _, model = spec.partition(":")
    return kind.strip(), model.strip()


def _registry() -> dict[str, str]:
    found = {**BUILTIN, **_registered}
    for ep in entry_points(group="bestofn.backends"):
        found.setdefault(ep.name, ep.value)
    return found


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
    registry = _registry()
    if kind not in registry:
        raise ConfigError(f"unknown backend {kind!r} in model spec {spec!r}; known: {', '.join(sorted(registry))}")
    module_name, _, class_name = registry[kind].partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.startswith("bestofn"):
            raise ConfigError(f"backend {kind!r} is not available in this version of bestofn") from exc
        raise
    cls = getattr(module, class_name)
    backend = cls(model, base_url=base_url) if kind == "vllm" else cls(model)
    backend.spec = spec
    _instances[key] = backend
    return backend
