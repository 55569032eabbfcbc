"""Sinks write records and never change them. The preference log is append-only JSONL, one pair a line.

Each `write` appends its lines with one `write` call under an exclusive lock (bestofn.sinks.jsonl.append), so that
many processes can append lines of any length to one log without interleaving (the lock file is LOG.lock,
beside the log).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from bestofn.sinks import jsonl
from bestofn.records import PreferencePair


class PreferenceLog:
    """Appends pairs in TRL's conversational preference format (plus scores, judges and ids)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def write(self, pairs: Iterable[PreferencePair]) -> int:
        pairs = list(pairs)
        jsonl.append(self.path, pairs)
        return len(pairs)
