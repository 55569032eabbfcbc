"""llama.cpp's threads fitted to the cores other processes leave free (bestofn.backends.local_threads).

Hosts are simulated by the readings a Threads object takes (CPU seconds of the machine and of this process,
the clock); /proc/stat is parsed from files; then the real embedded model, on both engines, decodes with the
counts chosen, and next to real busy processes it drops to one thread."""

from __future__ import annotations

import multiprocessing
import time

import pytest

from bestofn.backends import local_threads
from bestofn.backends.base import SamplingParams
from bestofn.backends.local_threads import Threads, busy_seconds, machine_cores
from bestofn.records import Message
from bestofn.sync import run_sync

SKY = [Message(role="user", content="Why is the sky blue?")]


class Host:
    """Readings of a simulated machine: `others` cores busy with other processes, `mine` with this one."""

    def __init__(self, others: float, mine: float = 1.0) -> None:
        self.others, self.mine, self.t, self.busy_s, self.own_s = others, mine, 0.0, 0.0, 0.0

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.busy_s += (self.others + self.mine) * seconds
        self.own_s += self.mine * seconds

    def threads(self, cores: int = 2) -> Threads:
        return Threads(cores=cores, busy=lambda: self.busy_s, own=lambda: self.own_s, clock=lambda: self.t)


@pytest.mark.parametrize("cores, others, expected", [
    (2, 0.0, (1, 2)),    # idle: llama-cpp-python's counts
    (2, 0.2, (1, 2)),    # background noise keeps both
    (2, 0.3, (1, 1)),    # a third of a core taken: threads would wait for it at every barrier
    (2, 1.0, (1, 1)),    # a busy process
    (2, 2.0, (1, 1)),    # another llama.cpp on both cores: still one thread
    (8, 3.0, (4, 5)),    # 5 of 8 free
    (8, 0.0, (4, 8)),
])
def test_the_counts_are_the_free_cores(cores, others, expected):
    host = Host(others)
    threads = host.threads(cores).limited_to(cores // 2, cores)
    host.advance(1.0)
    assert threads.update() == expected
    assert threads.others == pytest.approx(others)


def test_short_intervals_keep_the_last_choice_and_the_load_is_followed():
    host = Host(others=1.0)
    threads = host.threads().limited_to(2, 2)
    host.advance(local_threads.INTERVAL_S / 2)
    assert threads.update() == (2, 2)  # too short to tell: as configured
    host.advance(local_threads.INTERVAL_S)
    assert threads.update() == (1, 1)
    host.others = 0.0
    host.advance(local_threads.INTERVAL_S / 2)
    assert threads.update() == (1, 1)  # kept until the next full interval
    host.advance(local_threads.INTERVAL_S)
    assert threads.update() == (2, 2)  # the other process ended


def test_without_proc_stat_the_counts_stay_as_configured(tmp_path):
    missing = tmp_path / "nothing"
    assert busy_seconds(missing) is None
    threads = Threads(cores=2, busy=lambda: busy_seconds(missing)).limited_to(1, 2)
    assert threads.update() == (1, 2) and threads.others is None


def test_proc_stat_is_read(tmp_path, monkeypatch):
    stat = tmp_path / "stat"
    stat.write_text("cpu  100 20 30 5000 40 5 6 7 0 0\ncpu0 50 10 15 2500 20 2 3 3 0 0\n"
                    "cpu1 50 10 15 2500 20 3 3 4 0 0\nintr 12345\nctxt 999\n")
    monkeypatch.setattr(local_threads.os, "sysconf", lambda name: 100)
    assert busy_seconds(stat) == pytest.approx((100 + 20 + 30 + 5 + 6 + 7) / 100)  # idle and iowait left out
    assert machine_cores(stat) == 2
    stat.write_text("intr 1\n")
    assert busy_seconds(stat) is None
    assert busy_seconds() is not None  # this Linux host's own


@pytest.mark.parametrize("engine", ["batched", "sequential"])
def test_the_model_decodes_with_the_chosen_counts(local_backend, monkeypatch, engine):
    llama, _ = local_backend._ensure()
    host = Host(others=1.0)
    threads = host.threads().limited_to(2, 2)
    host.advance(1.0)
    monkeypatch.setattr(llama, "threads", threads)
    monkeypatch.setattr(local_backend, "engine", engine)
    out = run_sync(local_backend.sample(SKY, SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=1)))
    assert len(out) == 2 and all(c.text for c in out)
    ctx = llama._ctx.ctx if engine == "sequential" else llama._bestofn_batcher.engine._ctx.ctx
    assert threads.current == (1, 1)
    import llama_cpp

    assert (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) == (1, 1)
    host.others = 0.0
    host.advance(1.0)
    run_sync(local_backend.sample(SKY, SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=1)))
    assert (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) == (2, 2)


def _spin(started, stop) -> None:
    started.put(True)
    while not stop.is_set():
        pass


def test_next_to_busy_processes_the_model_takes_one_thread(local_backend, monkeypatch):
    """Real /proc/stat: all cores but one busy with other processes (spinning until told to stop), the model's
    threads measured over a real interval."""
    llama, _ = local_backend._ensure()
    threads = Threads().limited_to(llama.n_threads, llama.n_threads_batch)
    monkeypatch.setattr(llama, "threads", threads)
    mp = multiprocessing.get_context("spawn")
    started, stop = mp.Queue(), mp.Event()
    spinners = [mp.Process(target=_spin, args=(started, stop)) for _ in range(max(1, threads.cores - 1))]
    for p in spinners:
        p.start()
    try:
        for _ in spinners:
            started.get(timeout=60)  # every spinner runs
        threads.update()  # an interval that began before they ran is not the one measured
        time.sleep(local_threads.INTERVAL_S + 0.2)
        run_sync(local_backend.sample(SKY, SamplingParams(n=2, temperature=0.8, max_tokens=8, seed=1)))
    finally:
        stop.set()
        for p in spinners:
            p.join(10)
    assert threads.others is not None and threads.others >= threads.cores - 1.5
    assert threads.current == (1, 1)


@pytest.mark.parametrize("env, others, status, says", [
    (None, 1.0, "ok", "fitted to the cores other processes leave free; other processes use 1.0 of"),
    ("2", 0.0, "ok", "fixed at 2 (BESTOFN_LOCAL_THREADS); other processes use 0.0 of"),
    ("2", 1.0, "warn", "fixed at 2"),
    ("zero", 0.0, "fail", "BESTOFN_LOCAL_THREADS must be an integer"),
    (None, None, "ok", "fitted to the cores other processes leave free; this host does not report CPU use"),
    ("2", None, "ok", "fixed at 2 (BESTOFN_LOCAL_THREADS); this host does not report CPU use"),
    ("3", None, "warn", "fixed at 3"),  # no readings: more threads than the cores
])
def test_doctor_reports_the_policy_and_the_cores_in_use(monkeypatch, env, others, status, says):
    from bestofn.apps import doctor

    if env is None:
        monkeypatch.delenv("BESTOFN_LOCAL_THREADS", raising=False)
    else:
        monkeypatch.setenv("BESTOFN_LOCAL_THREADS", env)
    started = time.monotonic()  # a simulated host: `others` cores busy besides this process, for as long as it runs
    monkeypatch.setattr(local_threads, "busy_seconds", lambda: None if others is None else
                        others * (time.monotonic() - started) + time.process_time())  # None: no /proc/stat
    monkeypatch.setattr(local_threads, "machine_cores", lambda: 2)
    check = doctor.check_threads(settle=0.3)
    assert check.status == status and says in check.detail, check
    if status == "warn":
        assert "unset BESTOFN_LOCAL_THREADS" in check.fix
