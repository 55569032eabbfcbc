"""Sinks write records and never change them. The preference log is append-only JSONL, one pair a line.

Each line is written with one `write` on an O_APPEND descriptor under an exclusive `flock`, so that many
processes can append lines of any length to one log without interleaving.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from typing import Iterable

from bestofn.records import PreferencePair


#: line breaks to `str.splitlines()` though not to JSON: escaped, so every reader splits a log into its records
_SPLITLINES_BREAKS = {0x85: "\\u0085", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def pair_line(pair: PreferencePair) -> str:
    # Inside JSON these characters can only sit in strings, where the escape means the same character.
    return pair.model_dump_json().translate(_SPLITLINES_BREAKS) + "\n"


def append_lines(path: str | Path, lines: Iterable[str]) -> int:
    data = "".join(lines).encode("utf-8", "surrogatepass")
    if not data:
        return 0
    path = Path(path)
    if path.parent != Path(""):
        path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        os.fsync(fd)
    finally:
        os.close(fd)  # closing releases the lock
    return len(data)


class PreferenceLog:
    """Appends pairs in TRL's conversational preference format (plus scores, judges and ids)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, pairs: Iterable[PreferencePair]) -> int:
        pairs = list(pairs)
        append_lines(self.path, (pair_line(p) for p in pairs))
        return len(pairs)
