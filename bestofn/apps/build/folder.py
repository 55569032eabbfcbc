"""A build's folder output (`bestofn build --ray`): part files, a manifest of finished prompts, journals.

    OUT/part-<actor>-<n>.parquet|.jsonl      the rows of the prompts one actor committed together
    OUT/_bestofn/settings.json               what decides the rows: a resumed build must match it
    OUT/_bestofn/journal/<actor>-<n>.jsonl   those prompts' records (each one's whole Selection)
    OUT/_bestofn/manifest/<actor>-<n>.json   the commit: the prompts finished in part <actor>-<n>, with the small
                                             figures a summary needs (pairs, margins, agreement)
    OUT/_bestofn/lock                        held by the one driver writing OUT

A commit writes the journal, then the part, then the manifest entry, each atomically (a temp file whose name
starts with a dot, then a rename), so a prompt is finished exactly when a manifest entry names it, and readers
(pyarrow's dataset discovery skips `_` and `.` names; `datasets.load_dataset` gets `part-*`) never see half a
file. Only the driver, with no actor of its own running, calls `recover()`: it deletes temp files, parts and
journals that no entry names (a commit cut short), entries whose files are missing, and keeps a prompt that two
entries name (a task Ray retried after its first attempt had committed, an actor that outlived its driver) in
the first entry only, rewriting the other's part, journal, then entry. Every step can be cut short and redone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from bestofn.apps.build.journal import settings_changed
from bestofn.errors import ConfigError
from bestofn.sinks import jsonl
from bestofn.sinks.export import read_rows, write_rows
from bestofn.sinks.jsonl import replace_atomically
from bestofn.sinks.locking import FileLock, LockBusy

META = "_bestofn"
FILE_TYPES = ("parquet", "jsonl")


def _write_json(path: Path, value: Any) -> None:
    replace_atomically(path, lambda tmp: tmp.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8"))


class Folder:
    """OUT as a folder of parts. The driver opens it with `lock=True`; the actors open it without."""

    def __init__(self, out: str | Path, file_type: str, *, lock: bool = False):
        if file_type not in FILE_TYPES:
            raise ConfigError(f"--file-type must be one of {', '.join(FILE_TYPES)}, got {file_type!r}")
        self.out, self.ext = Path(out), "." + file_type
        if self.out.exists() and not self.out.is_dir():
            raise ConfigError(f"output {self.out}: with --ray the output is a folder, and this is a file")
        self.meta = self.out / META
        self.manifest, self.journal = self.meta / "manifest", self.meta / "journal"
        self._lock = None
        if lock:
            self.manifest.mkdir(parents=True, exist_ok=True)
            self.journal.mkdir(parents=True, exist_ok=True)
            try:
                self._lock = FileLock(self.meta / "lock", wait=False)
            except LockBusy:
                raise ConfigError(f"another build is writing {self.out} (lock held on {self.meta / 'lock'})") from None
        self._seen: dict[str, dict[str, Any]] = {}  # manifest entries read so far (an actor's view)

    def close(self) -> None:
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    # -- settings ----------------------------------------------------------------------------------------

    def check_settings(self, settings: dict[str, Any]) -> None:
        path = self.meta / "settings.json"
        if not path.exists():
            _write_json(path, settings)
            return
        changed = settings_changed(json.loads(path.read_text(encoding="utf-8")), settings)
        if changed:
            raise ConfigError(f"{self.out} was built with other settings ({'; '.join(changed)}); use another "
                              f"output folder, or delete {self.out} to start over")

    # -- the manifest ------------------------------------------------------------------------------------

    def part_path(self, name: str) -> Path:
        return self.out / f"part-{name}{self.ext}"

    def _journal_path(self, name: str) -> Path:
        return self.journal / f"{name}.jsonl"

    def _whole(self, name: str, entry: dict[str, Any]) -> bool:
        """An entry commits only with its files (one an orphaned actor wrote after recover() took them does not)."""
        return self._journal_path(name).exists() and (not entry["part"] or (self.out / entry["part"]).exists())

    def entries(self, *, fresh: bool = True) -> dict[str, dict[str, Any]]:
        """Manifest entries by commit name (`<actor>-<n>`), in name order, whole ones only (recover() deletes the
        others). `fresh=False`: read only the ones not seen before."""
        if fresh:
            self._seen = {}
        try:
            names = sorted(p.name for p in self.manifest.iterdir() if p.suffix == ".json" and not p.name.startswith("."))
        except FileNotFoundError:
            names = []
        for file in names:
            name = file[: -len(".json")]
            if name not in self._seen:
                try:
                    entry = json.loads((self.manifest / file).read_text(encoding="utf-8"))
                except FileNotFoundError:  # recover() removed it meanwhile
                    continue
                if self._whole(name, entry):
                    self._seen[name] = entry
        return dict(sorted(self._seen.items()))

    def finished(self, *, fresh: bool = True) -> set[str]:
        return {pid for entry in self.entries(fresh=fresh).values() for pid in entry["prompts"]}

    # -- a commit (an actor) -----------------------------------------------------------------------------

    def commit(self, name: str, records: list[dict[str, Any]], rows: list[dict[str, Any]],
               prompts: dict[str, dict[str, Any]]) -> None:
        """Journal, part, manifest entry: the prompts in `prompts` are finished once the entry is in place."""
        jsonl.write(self._journal_path(name), records)
        part = None
        if rows:
            write_rows(self.part_path(name), rows)
            part = self.part_path(name).name
        _write_json(self.manifest / f"{name}.json", {"part": part, "rows": len(rows), "prompts": prompts})

    # -- recovery (the driver) ---------------------------------------------------------------------------

    def recover(self) -> dict[str, dict[str, Any]]:
        """Make the folder hold each finished prompt's rows exactly once (see the module's docstring)."""
        for folder in (self.out, self.manifest, self.journal):
            for p in folder.glob(".*.tmp"):
                p.unlink(missing_ok=True)
        entries = self.entries()
        for p in self.manifest.glob("*.json"):  # an entry whose files are gone commits nothing
            if p.stem not in entries:
                p.unlink(missing_ok=True)
        named = {self.part_path(n).name for n in entries} | {self._journal_path(n).name for n in entries}
        for p in [*self.out.glob("part-*"), *self.journal.glob("*.jsonl")]:
            if p.name not in named:
                p.unlink()
        seen: set[str] = set()
        for name, entry in list(entries.items()):
            twice = seen & set(entry["prompts"])
            seen |= set(entry["prompts"])
            if twice:
                entries[name] = self._drop(name, entry, twice)
                if not entries[name]["prompts"]:
                    del entries[name]
        self._seen = dict(entries)
        return entries

    def _drop(self, name: str, entry: dict[str, Any], drop: set[str]) -> dict[str, Any]:
        keep = {pid: v for pid, v in entry["prompts"].items() if pid not in drop}
        part = self.out / entry["part"] if entry["part"] else None
        rows = [r for r in read_rows(part) if r["prompt_id"] not in drop] if part else []
        if not keep:  # the entry first: without it, the files are orphans the next recover() removes
            (self.manifest / f"{name}.json").unlink()
            for p in (part, self._journal_path(name)):
                if p is not None:
                    p.unlink(missing_ok=True)
            return {"part": None, "rows": 0, "prompts": {}}
        records = [r for _, r in jsonl.read(self._journal_path(name)) if r["prompt_id"] not in drop]
        jsonl.write(self._journal_path(name), records)
        if part is not None and rows:
            write_rows(part, rows)
        new = {"part": entry["part"] if rows else None, "rows": len(rows), "prompts": keep}
        _write_json(self.manifest / f"{name}.json", new)
        if part is not None and not rows:
            part.unlink(missing_ok=True)
        return new

    def records(self, entries: Iterable[str]) -> Iterable[dict[str, Any]]:
        """The journal records of the given commits."""
        for name in entries:
            for _, record in jsonl.read(self._journal_path(name)):
                yield record


def is_folder_output(path: str | Path) -> bool:
    """A folder made by `bestofn build --ray` (it has OUT/_bestofn/)."""
    return (Path(path) / META).is_dir()


__all__ = ["FILE_TYPES", "META", "Folder", "is_folder_output"]
