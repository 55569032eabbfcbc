"""JSON Lines, written and read in one place: every JSONL file bestofn writes or reads goes through here.

Writing. `line(record)` is one record as one line of compact UTF-8 JSON. Characters that JSON leaves raw but
`str.splitlines()` breaks on (U+0085, U+2028, U+2029) and lone surrogates (not encodable as UTF-8) are written
as `\\uXXXX` escapes, which mean the same character inside a JSON string (the only place they can occur), so every
reader, whether it splits on "\\n" or on every Unicode line break, sees one record per line. `append(path, records)`
adds lines to a file with one `write` under an exclusive lock, so that many processes can share one file;
`write(path, records)` replaces a file atomically (temp file, fsync, rename).

Reading. `read(path)` yields (line number, value) for every non-blank line and raises `BadLine`, a ConfigError
"FILE:LINE: why", on the first line that is not UTF-8 or not JSON; `scan(path)` yields the BadLine in the
value's place instead, for callers that collect issues. With `journal=True` a torn last line (no newline at the
end and not JSON: a writer died mid-line) is skipped, and the next `append` cuts it off; a bad line anywhere
else is still an error, and an input file is never read as a journal.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from pydantic import BaseModel

from bestofn.errors import ConfigError
from bestofn.sinks.locking import FileLock

#: JSON keeps these raw inside strings; escaped, they cannot split a line or fail the UTF-8 encoding
_ESCAPES = {c: f"\\u{c:04x}" for c in (0x85, 0x2028, 0x2029, *range(0xD800, 0xE000))}
_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no "\n" -> "\r\n" translation
_CHUNK = 1 << 16


class BadLine(ConfigError):
    """A line of a JSONL file that cannot be read: `FILE:LINE: reason`."""

    def __init__(self, path: str | Path, line: int, reason: str):
        super().__init__(f"{path}:{line}: {reason}")
        self.path, self.line, self.reason = Path(path), line, reason


# -- writing ---------------------------------------------------------------------------------------------


def dumps(record: Any) -> str:
    """One record as JSON text on one line (no newline). A pydantic model is written as its JSON-mode dump."""
    if isinstance(record, BaseModel):
        record = record.model_dump(mode="json")
    text = json.dumps(record, ensure_ascii=False, separators=(",", ":"), default=str)
    return text if text.isascii() else text.translate(_ESCAPES)


def line(record: Any) -> str:
    return dumps(record) + "\n"


def _encode(records: Iterable[Any]) -> bytes:
    return "".join(line(r) for r in records).encode("utf-8")


def _heal(fd: int) -> bytes:
    """What must precede new lines so that they start a line of their own. A file that does not end in a
    newline was left so by a writer that died mid-line (the lock is held, so no writer is at work): a torn
    fragment is cut off; a whole record that lacks only its newline (a file made by hand) gets one."""
    size = os.lseek(fd, 0, os.SEEK_END)
    if size == 0:
        return b""
    os.lseek(fd, size - 1, os.SEEK_SET)
    if os.read(fd, 1) == b"\n":
        return b""
    start = size
    while start > 0:  # find the start of the last line
        begin = max(0, start - _CHUNK)
        os.lseek(fd, begin, os.SEEK_SET)
        cut = os.read(fd, start - begin).rfind(b"\n")
        if cut >= 0:
            start = begin + cut + 1
            break
        start = begin
    os.lseek(fd, start, os.SEEK_SET)
    fragment = os.read(fd, size - start)
    try:
        json.loads(fragment)
        return b"\n"
    except ValueError:
        os.ftruncate(fd, start)
        return b""


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def lock_path(path: str | Path) -> Path:
    """The lock file that appenders to `path` share (beside it)."""
    path = Path(path)
    return path.with_name(path.name + ".lock")


def append(path: str | Path, records: Iterable[Any]) -> int:
    """Append one line per record with one `write`, under an exclusive lock; returns the bytes written."""
    path = Path(path)
    data = _encode(records)
    if not data:
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(lock_path(path)):
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | _BINARY, 0o644)
        try:
            data = _heal(fd) + data
            _write_all(fd, data)  # O_APPEND: at the end, whatever the offset the healing left
            os.fsync(fd)
        finally:
            os.close(fd)
    return len(data)


def _fsync(path: Path, *, folder: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | _BINARY)
    except OSError:
        if folder:  # Windows cannot open a folder (nor needs to: a rename is durable there without it)
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_atomically(path: str | Path, write_to: Callable[[Path], None]) -> None:
    """Write through `write_to(tmp_path)`, fsync, rename over `path`: readers never see half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    write_to(tmp)
    _fsync(tmp)
    os.replace(tmp, path)
    _fsync(path.parent, folder=True)


def write(path: str | Path, records: Iterable[Any]) -> int:
    """Replace `path` with one line per record, atomically; returns the number of records."""
    count = 0

    def write_to(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "w", encoding="utf-8", newline="\n") as fh:
            for record in records:
                fh.write(line(record))
                count += 1

    replace_atomically(path, write_to)
    return count


# -- reading ---------------------------------------------------------------------------------------------


def scan(path: str | Path, *, journal: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line; a bad line's value is its BadLine (not raised).

    `journal=True`: a last line without its newline that is not valid JSON is torn, not bad, and skipped."""
    path = Path(path)
    try:
        fh = path.open("rb")  # split on b"\n" only: a raw U+2028 inside a string is not a line break
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror or exc})") from None
    with fh:
        for number, raw in enumerate(fh, 1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]  # a UTF-8 byte order mark (Windows editors)
            if not raw.strip():
                continue
            value = _parse(path, number, raw)
            if journal and isinstance(value, BadLine) and not raw.endswith(b"\n"):
                return  # torn: only the last line can lack its newline
            yield number, value


def _parse(path: Path, number: int, raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return BadLine(path, number, f"not valid UTF-8 (byte {exc.start + 1}: {raw[exc.start:exc.start + 4]!r})")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        return BadLine(path, number, f"not valid JSON: {exc.msg} (column {exc.colno})")
    except RecursionError:
        return BadLine(path, number, "not readable JSON: nested too deeply")


def read(path: str | Path, *, journal: bool = False) -> Iterator[tuple[int, Any]]:
    """(line number, value) for every non-blank line; raises BadLine at the first bad one."""
    for number, value in scan(path, journal=journal):
        if isinstance(value, BadLine):
            raise value
        yield number, value


__all__ = ["BadLine", "append", "dumps", "line", "lock_path", "read", "replace_atomically", "scan", "write"]
