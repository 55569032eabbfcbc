"""A build's journal: the truth about which prompts are finished, in one SQLite file next to the output.

One transaction per prompt records its whole result (the Selection and its pairs), so a prompt is either
wholly finished or not started, whatever moment the process dies at. The output file is derived from the
journal: appended to after each commit while the build runs, rewritten atomically (temp file + rename) when a
build starts and when it ends. So a killed build leaves partial output behind, and the rerun repairs it
(a torn last line, rows committed but not yet appended) before going on: no row is lost or written twice.

Layout: `OUT.state/journal.sqlite` and `OUT.state/lock`; delete that folder (and OUT) to start over.
"""

from __future__ import annotations

import json
import sqlite3
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

from bestofn.errors import ConfigError
from bestofn.sinks.locking import FileLock, LockBusy

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS prompts (
    prompt_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    status TEXT NOT NULL,          -- done | failed
    reason TEXT,                   -- why a prompt gave no pair, or why it failed
    info TEXT,                     -- small JSON: pairs, margins, agreement counts, cost
    record BLOB,                   -- zlib-compressed JSON: the prompt's whole result (done only)
    finished REAL NOT NULL
);
"""


def settings_changed(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """`key: old -> new` for every setting that differs (a resumed build must change none)."""
    return [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted({*old, *new}) if old.get(k) != new.get(k)]


def state_dir(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".state")


class Journal:
    """Single-writer: the build holds an exclusive lock on `OUT.state/lock` for as long as it runs."""

    def __init__(self, out: str | Path):
        self.dir = state_dir(out)
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock = FileLock(self.dir / "lock", wait=False)
        except LockBusy:
            raise ConfigError(f"another build is writing {out} (lock held on {self.dir / 'lock'})") from None
        self.path = self.dir / "journal.sqlite"
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=FULL")  # a committed prompt survives even a power cut
            self.conn.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self.close()
            raise ConfigError(f"build journal {self.path} is unreadable ({exc}); delete {self.dir} to start over") from exc

    # -- settings ----------------------------------------------------------------------------------------

    def check_settings(self, settings: dict[str, Any]) -> None:
        """The first run stores its settings; a resumed run must use the same ones (they decide the rows)."""
        row = self.conn.execute("SELECT value FROM meta WHERE key='settings'").fetchone()
        blob = json.dumps(settings, sort_keys=True)
        if row is None:
            self.conn.execute("INSERT INTO meta VALUES ('settings', ?)", (blob,))
            return
        changed = settings_changed(json.loads(row[0]), settings)
        if changed:
            raise ConfigError(
                f"the journal in {self.dir} was made with other settings ({'; '.join(changed)}); "
                f"use another output path, or delete {self.dir} and the output to start over"
            )

    # -- prompts -----------------------------------------------------------------------------------------

    def finished(self) -> set[str]:
        return {r[0] for r in self.conn.execute("SELECT prompt_id FROM prompts WHERE status='done'")}

    def commit(self, prompt_id: str, seq: int, *, record: dict[str, Any], info: dict[str, Any], reason: str | None) -> None:
        blob = zlib.compress(json.dumps(record, ensure_ascii=False).encode("utf-8", "surrogatepass"), 3)
        self.conn.execute(
            "INSERT OR REPLACE INTO prompts VALUES (?, ?, 'done', ?, ?, ?, ?)",
            (prompt_id, seq, reason, json.dumps(info), blob, time.time()),
        )

    def fail(self, prompt_id: str, seq: int, reason: str) -> None:
        """A failed prompt is retried by the next run; it never replaces a finished one."""
        self.conn.execute(
            "INSERT INTO prompts VALUES (?, ?, 'failed', ?, NULL, NULL, ?) ON CONFLICT(prompt_id) DO UPDATE SET "
            "reason=excluded.reason, finished=excluded.finished WHERE prompts.status='failed'",
            (prompt_id, seq, reason, time.time()),
        )

    def records(self) -> Iterator[dict[str, Any]]:
        """Finished prompts' records in input order."""
        for (blob,) in self.conn.execute("SELECT record FROM prompts WHERE status='done' ORDER BY seq, prompt_id"):
            yield json.loads(zlib.decompress(blob))

    def infos(self) -> Iterator[tuple[str, str, str | None, dict[str, Any]]]:
        """(prompt_id, status, reason, info) of every prompt."""
        for pid, status, reason, info in self.conn.execute("SELECT prompt_id, status, reason, info FROM prompts"):
            yield pid, status, reason, json.loads(info) if info else {}

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None  # type: ignore[assignment]
        self._lock.release()

