"""Eight processes append preference pairs to one log at once, each line well over 64 KiB (many times PIPE_BUF
and the kernel's usual single-write chunk): every line must be valid JSON, none lost, none interleaved, none twice.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing as mp
from pathlib import Path

PROCESSES = 8
WRITES = 12  # per process; 1 to 3 pairs per write
ODD = "é 👍🏽 \x00 \u202e \u2028 \r\n \t \"quoted\" \\ "


def text_for(proc: int, write: int, k: int) -> str:
    """A deterministic, distinct, large text (66 to 200 KiB) per (process, write, pair)."""
    seed = hashlib.sha256(f"{proc}/{write}/{k}".encode()).hexdigest()
    size = 66 * 1024 + int(seed[:6], 16) % (134 * 1024)
    unit = f"[{proc}:{write}:{k}] {seed} {ODD}"
    return (unit * (size // len(unit) + 1))[:size]


def pair_for(proc: int, write: int, k: int):
    from bestofn.records import Message, PreferencePair, sha256_hex

    chosen, rejected = text_for(proc, write, k), f"short {proc}/{write}/{k}"
    return PreferencePair(
        id=sha256_hex("pair", proc, write, k), prompt=[Message(role="user", content=f"prompt {proc} {ODD}")],
        chosen=[Message(role="assistant", content=chosen)], rejected=[Message(role="assistant", content=rejected)],
        score_chosen=0.9, score_rejected=0.1, margin=0.8, strategy="best-worst", judges=["correctness"],
        template_sha256={}, generator="test", panel="default", seed=proc, chosen_id="c", rejected_id="r",
    )


def writer(path: str, proc: int, barrier) -> None:
    from bestofn.sinks.log import PreferenceLog

    log = PreferenceLog(path)
    pairs = [[pair_for(proc, w, k) for k in range(1 + (proc + w) % 3)] for w in range(WRITES)]
    barrier.wait()  # all start writing at the same moment
    for batch in pairs:
        log.write(batch)


def test_eight_processes_append_long_lines_without_loss_or_interleaving(tmp_path: Path):
    path = tmp_path / "logs" / "pairs.jsonl"
    ctx = mp.get_context("spawn")  # no fork of a parent that may hold llama.cpp threads
    barrier = ctx.Barrier(PROCESSES)
    procs = [ctx.Process(target=writer, args=(str(path), p, barrier)) for p in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0

    expected = {(p, w, k) for p in range(PROCESSES) for w in range(WRITES) for k in range(1 + (p + w) % 3)}
    raw = path.read_bytes()
    assert raw.endswith(b"\n")
    lines = raw.split(b"\n")[:-1]
    assert len(lines) == len(expected)  # none lost
    seen = set()
    for line in lines:
        record = json.loads(line.decode("utf-8"))  # valid UTF-8 and valid JSON: not interleaved, not torn
        proc, write, k = map(int, record["rejected"][0]["content"].split()[1].split("/"))
        assert record["chosen"][0]["content"] == text_for(proc, write, k)  # byte for byte what was written
        assert record["prompt"][0]["content"] == f"prompt {proc} {ODD}"
        seen.add((proc, write, k))
    assert seen == expected  # none twice, none missing
    assert min(len(line) for line in lines) > 64 * 1024
    # readers that split on every Unicode line break (str.splitlines) see the same records
    assert len(raw.decode("utf-8").splitlines()) == len(expected)
