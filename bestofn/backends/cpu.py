"""What this host's CPU offers, and what the embedded model does about it.

llama.cpp's "extra buffer types" repack weights at load time for a CPU's matrix or vector units (AMX on Intel
Sapphire Rapids and later; AVX2/AVX-512 layouts such as q4_K_8x8). Its AMX path crashes (SIGSEGV in
`ggml_backend_amx_mul_mat`) on some hosts. Elsewhere repacking bought us nothing: measured with
bench/bench_extra_buffers.py (llama-cpp-python 0.3.36, 2-core AVX-512 Xeon without AMX, 1 thread, medians of 5
interleaved runs), SmolLM2-135M Q4_1 (the embedded model) has no tensor llama.cpp repacks, so on and off load the
same buffers (prompt 179 vs 176 tok/s, generation 79 vs 94, noise); Qwen2.5-Coder-1.5B Q4_K_M repacks 597 MiB of
weights and then evaluates prompts 34% slower (84 vs 127 tok/s), generates 11% faster (22.7 vs 20.5 tok/s) and
takes 0.4 s longer to load. Judge calls are mostly prompt, so repacking is a net loss for best-of-n. The local
backend therefore loads models without extra buffer types by default, on every CPU: one configuration, the same
on AMX hosts and off them. `BESTOFN_LOCAL_EXTRA_BUFFERS=on|off` overrides the choice. The flags are read from
/proc/cpuinfo (Linux); elsewhere none are known, which changes only the reason given.
"""

from __future__ import annotations

import os
from pathlib import Path

from bestofn.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")
AMX_FLAGS = frozenset({"amx_int8", "amx_tile", "amx_bf16"})
ENV = "BESTOFN_LOCAL_EXTRA_BUFFERS"


def cpu_flags(cpuinfo: Path | None = None) -> frozenset[str]:
    """The feature flags of the first processor in `cpuinfo` (default /proc/cpuinfo); empty where unreadable."""
    try:
        text = (cpuinfo or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("flags", "Features"):
            return frozenset(value.split())
    return frozenset()


def has_amx(flags: frozenset[str]) -> bool:
    return bool(flags & AMX_FLAGS)


def features(flags: frozenset[str]) -> dict[str, bool]:
    """The features `bestofn doctor` reports: AMX, AVX-512 (foundation), AVX2."""
    return {"amx": has_amx(flags), "avx512": "avx512f" in flags, "avx2": "avx2" in flags}


def extra_buffers_choice(flags: frozenset[str] | None = None) -> tuple[bool, str]:
    """Whether to load models with llama.cpp's extra buffer types, and why (one phrase)."""
    raw = os.environ.get(ENV, "").strip().lower()
    if raw in ("on", "off"):
        return raw == "on", f"{ENV}={raw}"
    if raw:
        raise ConfigError(f"{ENV} must be 'on' or 'off', got {raw!r}")
    if has_amx(cpu_flags() if flags is None else flags):
        return False, "off: the CPU reports AMX, whose llama.cpp path crashes"
    return False, "off: weight repacking measured no faster for best-of-n (bestofn.backends.cpu)"
