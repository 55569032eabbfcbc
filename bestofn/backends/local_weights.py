"""A local model's weights in the format `bestofn.backends.cpu.weights_choice()` picks: the GGUF as given, or the
same weights dequantized to f16 or bf16, or requantized to Q8_0, by llama.cpp's own converter
(`llama_model_quantize`), once per file and
format, into BESTOFN_WEIGHTS_DIR (default: `weights/` in the cache folder, BESTOFN_CACHE_DIR or the user
cache). The file is written under a
temporary name and renamed into place, so that processes converting at the same time (Ray actors, test workers)
never load half a file. Where the conversion cannot be made (an unwritable folder, a full disk, a model llama.cpp
refuses), the model loads as given and the reason says why."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import threading
from pathlib import Path

from bestofn.backends.cache import default_cache_dir

_lock = threading.Lock()


def weights_dir() -> Path:
    env = os.environ.get("BESTOFN_WEIGHTS_DIR")
    return Path(env).expanduser() if env else default_cache_dir() / "weights"


@functools.cache
def _content_hash(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def converted_path(source: Path, kind: str, folder: Path | None = None) -> Path:
    """Where `source` converted to `kind` lives: keyed on the file's content (sha256; 0.16 s for SmolLM2's 98 MB,
    once per process and file), so that every virtual environment holding the same GGUF shares one converted
    file, and a changed file converts again."""
    stat = source.stat()
    key = _content_hash(str(source.resolve()), stat.st_size, stat.st_mtime_ns)[:16]
    return (folder or weights_dir()) / f"{source.stem}.{kind}.{key}.gguf"


def prepare(source: Path, kind: str, folder: Path | None = None) -> tuple[Path, str | None]:
    """(the file to load, None) for `kind` "original", or once `source` is converted to "f16"/"bf16"/"q8_0"; (source,
    why not) where the conversion failed."""
    if kind == "original":
        return source, None
    target = converted_path(source, kind, folder)
    if target.is_file():
        return target, None
    import llama_cpp.llama_cpp as C

    ftype = {"f16": C.LLAMA_FTYPE_MOSTLY_F16, "bf16": C.LLAMA_FTYPE_MOSTLY_BF16,
             "q8_0": C.LLAMA_FTYPE_MOSTLY_Q8_0}[kind]
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with _lock:
        if target.is_file():  # converted by another thread while this one waited
            return target, None
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            params = C.llama_model_quantize_default_params()
            params.ftype, params.allow_requantize, params.nthread = ftype, True, os.cpu_count() or 1
            code = C.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
            if code != 0:
                return source, f"llama.cpp could not convert {source.name} to {kind} (code {code})"
            os.replace(tmp, target)
        except OSError as exc:
            return source, f"could not write the {kind} weights to {target.parent}: {exc.strerror or exc}"
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
    return target, None
