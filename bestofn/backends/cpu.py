"""What this host's CPU offers, and what the embedded model does about it.

llama.cpp's "extra buffer types" repack weights at load time for a CPU's matrix or vector units (AMX on Intel
Sapphire Rapids and later; AVX2/AVX-512 layouts such as q4_K_8x8). Its AMX path crashes (SIGSEGV in
`ggml_backend_amx_mul_mat`) on some hosts. Elsewhere repacking bought us nothing: measured with
bench/bench_extra_buffers.py (llama-cpp-python 0.3.36, 2-core AVX-512 AMD EPYC without AMX, 1 thread, medians of
5 interleaved runs), SmolLM2-135M Q4_1 (the embedded model) has no tensor llama.cpp repacks, so on and off load the
same buffers (prompt 179 vs 176 tok/s, generation 79 vs 94, noise); Qwen2.5-Coder-1.5B Q4_K_M repacks 597 MiB of
weights and then evaluates prompts 34% slower (84 vs 127 tok/s), generates 11% faster (22.7 vs 20.5 tok/s) and
takes 0.4 s longer to load. Judge calls are mostly prompt, so repacking is a net loss for best-of-n. The local
backend therefore loads models without extra buffer types by default, on every CPU: one configuration, the same
on AMX hosts and off them. `BESTOFN_LOCAL_EXTRA_BUFFERS=on|off` overrides the choice. The flags are read from
/proc/cpuinfo (Linux); elsewhere none are known, which changes only the reason given.

The embedded model's weights: SmolLM2's GGUF ships as Q4_1, for which llama.cpp's x86 CPU code has no matrix
kernel that reuses a weight across several tokens: a batch of 4 tokens costs 4 single-token steps, so neither
prompts nor batched sequences run faster than one token at a time allows. The same weights dequantized to 16-bit
floats take llama.cpp's batched matrix kernels (llamafile's tinyBLAS): measured on the 2-core AVX-512 EPYC
(bench/bench_local.py's kernel table, 2 threads), prompts 2.0-2.5x (f16) and 3.2-3.6x (bf16) faster, 4 sequences
decoded together 1.2x (f16) and 1.35x (bf16) faster, one sequence alone 0.65x and 0.84x; the logits of Q4_1 and
bf16 differ by a KL divergence of 0.003 nats per token, with the same greedy token at every position of three test
prompts (the 16-bit path also keeps its activations in 16 bits where Q4_1's rounds them to 8 bits). The same weights
requantized to Q8_0 (8-bit integers, a scale per 32; llama.cpp's converter) take tinyBLAS's int8 matrix kernels, at
half bf16's bytes: on a 2-core Intel Sapphire Rapids (avx512_vnni and avx512_bf16; 2 threads) Q8_0 evaluates prompts
as fast as bf16 (598-609 against 571-616 tokens/s; Q4_1 348-365) and decodes faster (4 sequences 193 against 140
tokens/s, 16 after a 500-token prompt 224 against 190; Q4_1 205 and 185), and the README's best-of-4 (`aselect`, in
one process) took 17.3-17.9 s against 21.1-21.4 s on bf16 (generation 4.8 against 6.8 s, judging 12.2 against 14.1;
three runs each, interleaved). Its logits differ from Q4_1's by a KL divergence of 0.007 nats per token (bf16:
0.0045; the same greedy token at 113 and 114 of 118 positions of three prompts); requantizing to Q4_0 instead costs
0.41 nats and is not offered. So the embedded model is converted once (its file in the cache folder:
bestofn.backends.local_weights) to Q8_0 where the CPU has int8 dot products (VNNI: `avx512_vnni` or `avx_vnni`;
measured on one such CPU, and int8 dot products give twice the products of bf16 ones per instruction), to bf16 where
it has native bf16 dot products (`avx512_bf16`) without VNNI, to f16 where it has f16 conversions (`f16c` on x86,
`fphp`/`asimdhp` on ARM), and kept as shipped elsewhere. A `local:PATH` model is used as given.
`BESTOFN_LOCAL_WEIGHTS=auto|original|f16|bf16|q8_0` overrides: `original` is the shipped file (the texts of earlier
releases), `f16`/`bf16`/`q8_0` convert any local model.
"""

from __future__ import annotations

import os
from pathlib import Path

from bestofn.errors import ConfigError

CPUINFO = Path("/proc/cpuinfo")
AMX_FLAGS = frozenset({"amx_int8", "amx_tile", "amx_bf16"})
ENV = "BESTOFN_LOCAL_EXTRA_BUFFERS"
WEIGHTS_ENV = "BESTOFN_LOCAL_WEIGHTS"
WEIGHTS = ("auto", "original", "f16", "bf16", "q8_0")
F16_FLAGS = frozenset({"f16c", "fphp", "asimdhp"})
INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni"})


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
    """The features `bestofn doctor` reports: AMX, AVX-512 (foundation), AVX2, int8 (VNNI), bf16 and f16."""
    return {"amx": has_amx(flags), "avx512": "avx512f" in flags, "avx2": "avx2" in flags,
            "int8": bool(flags & INT8_FLAGS), "bf16": "avx512_bf16" in flags, "f16": bool(flags & F16_FLAGS)}


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


def weights_choice(embedded: bool, flags: frozenset[str] | None = None) -> tuple[str, str]:
    """The weights a local model loads with ("original", "f16", "bf16" or "q8_0"), and why (one phrase). `embedded`:
    the model is the shipped SmolLM2 (`auto` converts only that one)."""
    raw = os.environ.get(WEIGHTS_ENV, "").strip().lower() or "auto"
    if raw not in WEIGHTS:
        raise ConfigError(f"{WEIGHTS_ENV} must be one of {', '.join(WEIGHTS)}, got {raw!r}")
    if raw != "auto":
        return raw, f"{WEIGHTS_ENV}={raw}"
    if not embedded:
        return "original", "original: a local:PATH model is used as given"
    has = features(cpu_flags() if flags is None else flags)
    if has["int8"]:
        return "q8_0", "q8_0: the CPU has int8 dot products (VNNI)"
    if has["bf16"]:
        return "bf16", "bf16: the CPU has native bf16 dot products (avx512_bf16)"
    if has["f16"]:
        return "f16", "f16: the CPU converts f16 in hardware"
    return "original", "original: no f16 or bf16 arithmetic known on this CPU"
