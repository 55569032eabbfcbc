"""The embedded model loads without llama.cpp's extra buffer types where the CPU reports AMX (their AMX path
segfaults there) and, by default, elsewhere too; BESTOFN_LOCAL_EXTRA_BUFFERS=on|off overrides that.

The CPU is simulated with a cpuinfo file; what is asserted is the `use_extra_bufts` field of the real
`llama_model_params` struct handed to llama.cpp's `llama_model_load_from_file`, recorded by a wrapper that lets
the real load of SmolLM2 go on (and the model then generates; on a machine whose own CPU has AMX, without the
extra buffer types, which would crash it there)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bestofn.backends import cpu, local
from bestofn.backends.base import SamplingParams
from bestofn.errors import BackendError, ConfigError
from bestofn.records import Message

AMX = "fpu sse2 avx2 avx512f avx512bw amx_bf16 amx_tile amx_int8"
NO_AMX = "fpu sse2 avx2 avx512f avx512bw"
HI = [Message(role="user", content="hi")]


def cpuinfo(tmp_path, flags: str):
    path = tmp_path / "cpuinfo"
    path.write_text(f"processor\t: 0\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nvendor_id\t: GenuineIntel\nflags\t\t: {flags}\n")
    return path


@pytest.fixture
def loads(monkeypatch, own_models):
    """`use_extra_bufts` of every llama_model_params that reaches llama.cpp's loader, with an empty model cache
    (models this test loads are closed afterwards; those loaded before it come back)."""
    import llama_cpp.llama_cpp as c

    seen: list[bool] = []
    real = c.llama_model_load_from_file
    real_amx = cpu.has_amx(cpu.cpu_flags(Path("/proc/cpuinfo")))  # this machine's own CPU, not a simulated one

    def load_from_file(path_model, params):
        seen.append(bool(params.use_extra_bufts))
        if real_amx:  # on a real AMX CPU the repacking path segfaults (why they are off): load without it
            params = type(params).from_buffer_copy(params)
            params.use_extra_bufts = False
        return real(path_model, params)

    monkeypatch.setattr(c, "llama_model_load_from_file", load_from_file)
    monkeypatch.delenv(cpu.ENV, raising=False)
    return seen


async def generate(backend: local.LocalBackend) -> None:
    """A plain call and a logprobs call: both on the one Llama instance the backend makes."""
    plain = await backend.sample(HI, SamplingParams(max_tokens=4, temperature=0))
    scored = await backend.sample(HI, SamplingParams(max_tokens=4, temperature=0, top_logprobs=2))
    assert plain[0].usage.completion_tokens > 0 and scored[0].logprobs


@pytest.mark.parametrize("flags, env, expected", [
    (AMX, None, False),
    (NO_AMX, None, False),  # the default everywhere since repacking measured no faster (bestofn.backends.cpu)
    (AMX, "on", True),
    (NO_AMX, "on", True),
])
async def test_the_params_that_reach_llama_cpp_follow_the_cpu_and_the_override(
        tmp_path, monkeypatch, loads, flags, env, expected):
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo(tmp_path, flags))
    if env is not None:
        monkeypatch.setenv(cpu.ENV, env)
    backend = local.LocalBackend()
    assert backend.extra_buffers is expected
    assert ("AMX" in backend.extra_buffers_reason) == (flags == AMX and env is None)
    await generate(backend)
    assert loads == [expected]  # one instance: logprobs are read from the last position, no logits_all twin


async def test_the_model_cache_keeps_one_model_per_choice(tmp_path, monkeypatch, loads):
    monkeypatch.setattr(cpu, "CPUINFO", cpuinfo(tmp_path, AMX))
    first = local.LocalBackend()
    await first.count_tokens("hi")
    await local.LocalBackend().count_tokens("hi")  # same path, same choice: the cached model
    monkeypatch.setenv(cpu.ENV, "on")
    await local.LocalBackend().count_tokens("hi")
    assert loads == [False, True]
    assert local._load(first.path)[0].model_params.use_extra_bufts is True  # the env now says on: the cached "on"


def test_the_override_is_on_or_off_and_nothing_else(monkeypatch):
    monkeypatch.setenv(cpu.ENV, " OFF ")
    assert cpu.extra_buffers_choice(frozenset()) == (False, f"{cpu.ENV}=off")
    monkeypatch.setenv(cpu.ENV, "maybe")
    with pytest.raises(ConfigError, match="BESTOFN_LOCAL_EXTRA_BUFFERS must be 'on' or 'off'"):
        local.LocalBackend()


def test_cpu_flags_come_from_the_first_processor(tmp_path):
    flags = cpu.cpu_flags(cpuinfo(tmp_path, AMX))
    assert cpu.has_amx(flags) and cpu.features(flags) == {"amx": True, "avx512": True, "avx2": True,
                                                              "int8": False, "bf16": False, "f16": False}
    assert cpu.features(cpu.cpu_flags(cpuinfo(tmp_path, NO_AMX)))["amx"] is False
    assert cpu.cpu_flags(tmp_path / "missing") == frozenset()


def test_a_llama_cpp_python_without_the_field_refuses_to_load_without_extra_buffers(monkeypatch, loads):
    """An older llama-cpp-python whose llama_model_params has no use_extra_bufts cannot honour "off": a clear error,
    not a silently ignored attribute; "on" (what such a version always did) still loads."""
    import ctypes

    import llama_cpp

    class OldParams(ctypes.Structure):
        _fields_ = [f for f in llama_cpp.llama_model_params._fields_ if f[0] != "use_extra_bufts"]

    monkeypatch.setattr(llama_cpp, "llama_model_params", OldParams)
    old_llama = local.llama_class.__wrapped__()  # the class as made for that version, not the cached one
    path = str(local.default_model_path())
    with pytest.raises(BackendError, match="has no use_extra_bufts"):
        old_llama(model_path=path, verbose=False, use_extra_bufts=False)
    assert loads == []
    old_llama(model_path=path, verbose=False, use_extra_bufts=True).close()
    assert loads == [True]
