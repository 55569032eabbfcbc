"""The one bridge from sync code to the async core.

- `run_sync(coro)`: run a coroutine to completion on a fresh event loop; where a loop is already running in
  this thread (Jupyter, an async web app), on a fresh loop in a worker thread. One loop per call: backends
  keep per-loop state (HTTP pools, limits; bestofn.backends.limits.PerLoop) and close it as each loop ends.
- `Portal()`: one long-lived event loop in a daemon thread, for sync callers that call many times (a wrapped
  sync client): per-loop state lives on between calls. Works from any thread, inside a running loop too.
  `close()` stops the loop, which closes that state.

Both are anyio's `BlockingPortal` (or plain `asyncio.run` where no loop is running).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from concurrent.futures import Future
from typing import Any, Coroutine, TypeVar

import anyio
from anyio.from_thread import BlockingPortal, start_blocking_portal

T = TypeVar("T")


async def _await(aw: Awaitable[T]) -> T:
    return await aw


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with start_blocking_portal(name="bestofn-sync") as portal:
        return portal.call(_await, coro)


class Portal:
    """One event loop in a daemon thread, started on first use, serving anyio's `BlockingPortal`: `run(coro)`
    blocks until the coroutine is done there (an interrupt cancels it on the loop)."""

    def __init__(self, name: str = "bestofn-portal") -> None:
        self.name = name
        self._lock = threading.Lock()
        self._portal: BlockingPortal | None = None
        self._thread: threading.Thread | None = None

    def _started(self) -> BlockingPortal:
        with self._lock:
            if self._portal is None:
                ready: Future[BlockingPortal] = Future()

                async def serve() -> None:
                    async with BlockingPortal() as portal:
                        ready.set_result(portal)
                        await portal.sleep_until_stopped()

                # a daemon thread: an interpreter exiting with a portal still open does not wait for it
                self._thread = threading.Thread(target=anyio.run, args=(serve,), name=self.name, daemon=True)
                self._thread.start()
                self._portal = ready.result()
            return self._portal

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        future = self._started().start_task_soon(_await, coro)
        try:
            return future.result()
        except BaseException:
            future.cancel()
            raise

    def close(self) -> None:
        """Wait for the calls in flight, then stop the loop (closing what its async generators hold)."""
        with self._lock:
            portal, thread, self._portal, self._thread = self._portal, self._thread, None, None
        if portal is not None and thread is not None:
            portal.call(portal.stop)
            thread.join()


__all__ = ["Portal", "run_sync"]
