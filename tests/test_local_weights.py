"""The embedded model's weights: converted once to Q8_0, bf16 or f16 where the CPU computes those well, kept as
shipped elsewhere (bestofn.backends.cpu.weights_choice, bestofn.backends.local_weights).

Hosts are simulated with cpuinfo files (x86 with AVX-512 VNNI and bf16, with AVX-VNNI only, with bf16 but no VNNI,
with f16c only, ARM with fp16, no flags); the conversion is llama.cpp's own, run on the real SmolLM2 file; the
converted model is loaded and generates."""

from __future__ import annotations

import subprocess
import sys

import pytest

from bestofn.apps import doctor
from bestofn.backends import cpu, local
from bestofn.backends.base import SamplingParams
from bestofn.backends.cache import call_key
from bestofn.backends.local_weights import converted_path, prepare
from bestofn.errors import ConfigError
from bestofn.records import Message
from bestofn.sync import run_sync

BF16_HOST = "fpu sse2 avx2 f16c fma avx512f avx512bw avx512_bf16 avx512_vnni"  # Sapphire Rapids, Zen 4
AVX_VNNI_HOST = "fpu sse2 avx2 f16c fma avx_vnni"  # Alder Lake: VNNI without AVX-512
BF16_NO_VNNI = "fpu sse2 avx2 f16c fma avx512f avx512_bf16"  # a VM that hides VNNI
F16_HOST = "fpu sse2 avx2 f16c fma"
OLD_HOST = "fpu sse2 ssse3"
ARM = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp"
SKY = [Message(role="user", content="Why is the sky blue?")]


def cpuinfo(tmp_path, flags: str, key: str = "flags"):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\n{key}\t\t: {flags}\n\nprocessor\t: 1\n{key}\t\t: {flags}\n")
    return path


@pytest.mark.parametrize("flags, key, embedded, env, expected", [
    (BF16_HOST, "flags", True, None, "q8_0"),
    (AVX_VNNI_HOST, "flags", True, None, "q8_0"),
    (BF16_NO_VNNI, "flags", True, None, "bf16"),
    (F16_HOST, "flags", True, None, "f16"),
    (ARM, "Features", True, None, "f16"),
    (OLD_HOST, "flags", True, None, "original"),
    ("", "flags", True, None, "original"),  # flags unknown (no /proc/cpuinfo): as shipped
    (BF16_HOST, "flags", False, None, "original"),  # a local:PATH model is used as given
    (BF16_HOST, "flags", True, "original", "original"),
    (OLD_HOST, "flags", True, "bf16", "bf16"),
    (F16_HOST, "flags", False, "f16", "f16"),
    (BF16_HOST, "flags", True, "auto", "q8_0"),
    (BF16_HOST, "flags", True, "bf16", "bf16"),
])
def test_the_weights_follow_the_simulated_host_and_the_override(tmp_path, monkeypatch, flags, key, embedded, env,
                                                                 expected):
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo(tmp_path, flags, key))
    if env is None:
        monkeypatch.delenv(cpu.WEIGHTS_ENV, raising=False)
    else:
        monkeypatch.setenv(cpu.WEIGHTS_ENV, env)
    kind, reason = cpu.weights_choice(embedded=embedded)
    assert kind == expected and reason.startswith(expected if env in (None, "auto") else cpu.WEIGHTS_ENV)
    backend = local.LocalBackend() if embedded else None
    if backend is not None:  # the choice reported is the one the backend makes, and its call cache key says it
        assert (backend.weights, backend.variant) == (expected, None if expected == "original" else expected)


def test_a_bad_override_is_an_error_naming_the_variable(monkeypatch):
    monkeypatch.setenv(cpu.WEIGHTS_ENV, "q4_0")
    with pytest.raises(ConfigError, match=f"{cpu.WEIGHTS_ENV} must be one of auto, original, f16, bf16, q8_0"):
        cpu.weights_choice(embedded=True)
    check = doctor.check_cpu(frozenset(BF16_HOST.split()))
    assert check.status == "fail" and cpu.WEIGHTS_ENV in check.fix


def test_doctor_reports_the_weights_of_the_simulated_host(monkeypatch):
    monkeypatch.delenv(cpu.WEIGHTS_ENV, raising=False)
    detail = doctor.check_cpu(frozenset(BF16_HOST.split())).detail
    assert "int8 dot (VNNI) yes" in detail and "embedded model weights q8_0 (the CPU has int8 dot products" in detail
    assert "embedded model weights bf16" in doctor.check_cpu(frozenset(BF16_NO_VNNI.split())).detail
    assert "embedded model weights f16" in doctor.check_cpu(frozenset(F16_HOST.split())).detail
    assert "embedded model weights original" in doctor.check_cpu(frozenset(OLD_HOST.split())).detail


def test_the_call_cache_keys_on_the_weights_and_old_keys_stay():
    class Fake:
        spec, model, base_url, closes_strings = "local", "", None, True

        def __init__(self, variant):
            self.variant = variant

    params = SamplingParams(max_tokens=4, seed=0)
    keys = {v: call_key(Fake(v), SKY, params, 0) for v in (None, "f16", "bf16")}
    assert len(set(keys.values())) == 3
    # the shipped weights keep the keys made before the variant existed
    from bestofn.backends.cache import FORMAT
    from bestofn.records import sha256_hex
    old = sha256_hex("bestofn-call", FORMAT, "local", None, None, [m.model_dump() for m in SKY],
                     params.model_dump(exclude={"n", "close_strings_at"}), 0)  # the fields SamplingParams had
    assert keys[None] == old


@pytest.mark.parametrize("kind", ["bf16", "f16", "q8_0"])
def test_the_converted_model_is_the_same_model(tmp_path, kind):
    """Converted once (a second prepare reuses the file), loaded, and greedy decoding gives the shipped model's
    text: the weights are the same numbers in 16 bits, and Q4_1's values on Q8_0's finer grid."""
    import llama_cpp.llama_cpp as C

    source = local.default_model_path()
    target, failed = prepare(source, kind, tmp_path)
    assert failed is None and target == converted_path(source, kind, tmp_path) and target.is_file()
    stamp = target.stat().st_mtime_ns
    assert prepare(source, kind, tmp_path) == (target, None) and target.stat().st_mtime_ns == stamp
    assert list(tmp_path.iterdir()) == [target]  # no temporary file left
    texts = {}
    for path in (source, target):
        llama = local.llama_class()(model_path=str(path), n_ctx=512, verbose=False)
        try:
            desc = ctypes_desc(C, llama)
            texts[path] = llama.create_chat_completion(messages=[m.model_dump() for m in SKY], temperature=0.0,
                                                       max_tokens=24)["choices"][0]["message"]["content"]
        finally:
            llama.close()
        assert (kind.upper() in desc) == (path == target), desc
    assert texts[source] == texts[target] and len(texts[target]) > 40


def ctypes_desc(C, llama) -> str:
    import ctypes

    buf = ctypes.create_string_buffer(128)
    C.llama_model_desc(llama._model.model, buf, 128)
    return buf.value.decode()


def test_an_unwritable_folder_loads_the_shipped_weights_and_doctor_warns(tmp_path, monkeypatch, own_models):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    source = local.default_model_path()
    path, failed = prepare(source, "bf16", blocker / "weights")
    assert path == source and "could not write the bf16 weights" in failed and str(blocker) in failed

    monkeypatch.setenv("BESTOFN_WEIGHTS_DIR", str(blocker / "weights"))
    monkeypatch.setenv(cpu.WEIGHTS_ENV, "bf16")
    backend = local.LocalBackend()  # a model of its own (own_models)
    [c] = run_sync(backend.sample(SKY, SamplingParams(max_tokens=4, temperature=0)))
    assert c.usage.completion_tokens > 0
    assert (backend.weights, backend.variant) == ("original", None) and backend.weights_failed == failed
    check = doctor.check_local_model()  # the child inherits the environment: the same failure, reported
    assert check.status == "warn" and "weights as shipped" in check.detail and "BESTOFN_WEIGHTS_DIR" in check.fix


def test_processes_converting_at_once_leave_one_whole_file(tmp_path):
    code = ("import sys; from pathlib import Path; from bestofn.backends.local import default_model_path, "
            "llama_class; from bestofn.backends.local_weights import prepare; llama_class(); "
            "print(prepare(default_model_path(), 'f16', Path(sys.argv[1])))")
    children = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
                for _ in range(3)]
    outs = [child.communicate(timeout=300)[0] for child in children]
    assert all(child.returncode == 0 for child in children) and all("None)" in out for out in outs)
    target = converted_path(local.default_model_path(), "f16", tmp_path)
    assert list(tmp_path.iterdir()) == [target]
    llama = local.llama_class()(model_path=str(target), n_ctx=256, verbose=False)
    try:
        assert llama.create_completion("The sky is", max_tokens=4, temperature=0.0)["choices"][0]["text"]
    finally:
        llama.close()


def test_the_same_file_in_two_places_shares_one_conversion(tmp_path):
    """Keyed on the content: a second virtual environment's copy of the GGUF finds the first one's conversion; a
    changed file gets its own."""
    import shutil

    source = local.default_model_path()
    copy = tmp_path / "venv2" / source.name
    copy.parent.mkdir()
    shutil.copyfile(source, copy)
    folder = tmp_path / "weights"
    assert converted_path(copy, "bf16", folder) == converted_path(source, "bf16", folder)
    with copy.open("r+b") as fh:  # one byte of the copy changed
        fh.seek(copy.stat().st_size - 1)
        last = fh.read(1)
        fh.seek(-1, 2)
        fh.write(bytes([last[0] ^ 1]))
    assert converted_path(copy, "bf16", folder) != converted_path(source, "bf16", folder)
