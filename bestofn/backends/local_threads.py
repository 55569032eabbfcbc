"""llama.cpp's thread counts fitted to the cores that other processes leave free.

llama.cpp's CPU threads meet at a barrier after every operation of a decode and spin while they wait. When
another busy process holds one of the cores they were counted for, every barrier waits for a descheduled
thread: on 2 cores next to another llama.cpp process, the embedded model generated 33 tokens/s with 2 fixed
threads and 103 with the fitted count (bench/bench_local.py --contention). So, unless BESTOFN_LOCAL_THREADS
fixes the counts, the local backend asks `Threads.update()` before each decode (the batched engine: before each
step) and sets the context's threads to at most the free cores:

    others = (CPU seconds all processes used - CPU seconds this process used) / wall seconds   (since last time)
    free   = floor(cores - others + SLACK), at least 1

read from the kernel's counters (/proc/stat, and this process's CPU time, all its threads), at most every
INTERVAL_S. Where /proc/stat cannot be read (not Linux), the counts stay as configured. The thread count does
not change llama.cpp's numbers (the same seeds gave the same texts with 1 and 2 threads, on Q4_1 and bf16)."""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from pathlib import Path

from bestofn.backends.limits import env_int

ENV = "BESTOFN_LOCAL_THREADS"
#: how long an interval must be before its reading replaces the last choice
INTERVAL_S = 0.25
#: a thread is kept for a core that other processes use less than this share of
SLACK = 0.25
STAT = Path("/proc/stat")


def fixed_count() -> int | None:
    """BESTOFN_LOCAL_THREADS: the thread count fixed for both of llama.cpp's numbers; None (unset): fitted."""
    return env_int(ENV, None)


def busy_seconds(stat: Path = STAT) -> float | None:
    """CPU seconds all cores have spent on work since boot (user, nice, system, irq, softirq, steal), or None
    where the kernel does not say (no /proc/stat)."""
    try:
        fields = stat.read_text().split("\n", 1)[0].split()
    except OSError:
        return None
    if len(fields) < 9 or fields[0] != "cpu":
        return None
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def machine_cores(stat: Path = STAT) -> int:
    """The cores /proc/stat counts (its per-core lines), else os.cpu_count()."""
    try:
        lines = stat.read_text().splitlines()
    except OSError:
        return os.cpu_count() or 1
    return sum(1 for line in lines if line.startswith("cpu") and line[3:4].isdigit()) or os.cpu_count() or 1


class Threads:
    """The (n_threads, n_threads_batch) of a model's next decodes: the configured counts, lowered to the cores
    other processes leave free. `busy`, `own` and `clock` are the readings (tests give their own)."""

    def __init__(self, *, cores: int | None = None, busy: Callable[[], float | None] | None = None,
                 own: Callable[[], float] = time.process_time, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = self.current = (1, 1)
        self.cores = machine_cores() if cores is None else cores
        #: CPU cores other processes used over the last interval (None until measured)
        self.others: float | None = None
        self._busy, self._own, self._clock = busy or busy_seconds, own, clock
        self._last = self._reading()

    def limited_to(self, n_threads: int, n_threads_batch: int) -> Threads:
        """Set the configured counts (the most `update` returns); the readings count from this object's making."""
        self.limit = self.current = (n_threads, n_threads_batch)
        return self

    def _reading(self) -> tuple[float, float, float] | None:
        busy = self._busy()
        return None if busy is None else (self._clock(), busy, self._own())

    def update(self) -> tuple[int, int]:
        """The counts to decode with now."""
        if self._last is None:
            return self.limit
        if self._clock() - self._last[0] < INTERVAL_S:
            return self.current
        now = self._reading()
        if now is None:
            return self.limit
        wall, busy, own = (b - a for a, b in zip(self._last, now))
        self._last = now
        self.others = max(0.0, busy - own) / wall
        free = self.free()
        self.current = (min(self.limit[0], free), min(self.limit[1], free))
        return self.current

    def free(self) -> int:
        """The threads the cores other processes left free over the last interval hold (all cores before one
        was measured)."""
        return max(1, math.floor(self.cores - (self.others or 0.0) + SLACK))
