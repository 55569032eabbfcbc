"""A loopback protocol server (tests/loopback.py) in a child process of its own, so that its event loop does not
share the benchmark's core time: `serve(latency, conn)` runs in the child, sends the base URL, then answers the
messages `ask` sends until "stop"."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from typing import Any


class ServerProcess:
    def __init__(self, serve: Callable[[float, Any], None], latency: float):
        ctx = multiprocessing.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=serve, args=(latency, child), daemon=True)
        self.proc.start()
        self.base_url = self.conn.recv()

    def ask(self, msg: str) -> Any:
        self.conn.send(msg)
        return self.conn.recv()

    def close(self) -> None:
        self.ask("stop")
        self.proc.join(5)
