"""Work kept off a request's path, for `bestofn.wrap` and `bestofn serve`: `BackgroundSink(log)`, preference
pairs written by one background thread (a JSONL path becomes a `PreferenceLog`; any object with `write(pairs)`
works); `flush()` blocks until everything submitted is written; every sink is flushed at interpreter exit.
(The event loop of wrapped sync clients is bestofn.sync.Portal.)
"""

from __future__ import annotations

import atexit
import logging
import queue
import threading
import weakref
from pathlib import Path
from typing import Any, Iterable

from bestofn.errors import ConfigError
from bestofn.records import PreferencePair
from bestofn.sinks.log import PreferenceLog

log = logging.getLogger("bestofn.background")


# ------------------------------------------------------------------------------------------------ sink


class BackgroundSink:
    """Writes pairs from one background thread, so a request never waits on the disk. `flush()` blocks until
    everything submitted so far is written; every sink is flushed at interpreter exit."""

    _all: weakref.WeakSet[BackgroundSink] = weakref.WeakSet()

    def __init__(self, sink: Any) -> None:
        self.sink = PreferenceLog(sink) if isinstance(sink, (str, Path)) else sink
        if not callable(getattr(self.sink, "write", None)):
            raise ConfigError(f"log must be a path or have a write(pairs) method, got {type(sink).__name__}")
        self.written = 0
        self.errors = 0
        self._queue: queue.Queue[list[PreferencePair] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        BackgroundSink._all.add(self)

    def submit(self, pairs: Iterable[PreferencePair]) -> None:
        pairs = list(pairs)
        if not pairs:
            return
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="bestofn-sink", daemon=True)
                self._thread.start()
        self._queue.put(pairs)

    def _run(self) -> None:
        while (pairs := self._queue.get()) is not None:
            try:
                self.sink.write(pairs)
                self.written += len(pairs)
            except Exception as exc:  # a failing sink must not take requests down; it is reported
                self.errors += 1
                log.error("preference sink %s failed: %s", type(self.sink).__name__, exc)
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def flush(self) -> None:
        self._queue.join()

    def close(self) -> None:
        self.flush()
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(10)


@atexit.register
def _flush_sinks() -> None:
    for sink in list(BackgroundSink._all):
        sink.close()
