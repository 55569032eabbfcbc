"""Exclusive file locks between processes, on every OS: the one place that knows how.

`filelock` does the work: `flock` on POSIX, `msvcrt` on Windows (and a lock by file creation where neither
exists), on a lock file of its own that stays in place. Locks are advisory: they exclude only the other holders
of the same lock file. A lock belongs to its object, not to a thread: it may be released from any thread.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

import filelock


class LockBusy(Exception):
    """Another holder has the lock and the caller asked not to wait."""

    def __init__(self, path: str | Path):
        super().__init__(f"lock held by another process on {path}")
        self.path = Path(path)


class FileLock:
    """Holds an exclusive lock on `path` (created if missing) from construction until `release()`.

    `wait=True` blocks until the lock is free; `wait=False` raises LockBusy at once when another holder has it.
    Also a context manager: `with FileLock(p): ...` releases on leaving the block.
    """

    def __init__(self, path: str | Path, *, wait: bool = True):
        self.path = Path(path)
        self._lock = filelock.FileLock(os.fspath(self.path), thread_local=False)
        try:
            self._lock.acquire(timeout=-1 if wait else 0)
        except filelock.Timeout:
            raise LockBusy(self.path) from None

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def release(self) -> None:
        if self._lock.is_locked:
            self._lock.release(force=True)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.release()
