"""The thin sync wrappers over the async core: `run_sync(coro)` runs a coroutine to completion, also where an
event loop is already running (Jupyter, an async web app), by running it on a fresh loop in a worker thread."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Coroutine, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="bestofn-sync") as pool:
        return pool.submit(asyncio.run, coro).result()
