"""`bestofn build` killed with SIGKILL at 20 random points, then resumed: exactly-once output.

tests/test_build_crash.py (the builder's) kills 4-5 times in the default run; this is the 20-kill variant the
issue asks for, marked slow (BESTOFN_SLOW=1). Each kill lands after a random number of model calls (mid-prompt,
mid-commit) or at a random moment (start-up, the final rewrite); partial output is checked at every kill, and
must have been seen at most of them. After the kills one resume must produce exactly the bytes of an
uninterrupted build: no row lost, none twice; a finished build then makes zero calls.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.loopback import LoopbackServer

PROMPTS = 60
N = 3
KILLS = 20


def _cmd(prompts: Path, out: Path, srv: LoopbackServer) -> list[str]:
    return [sys.executable, "-m", "bestofn", "build", str(prompts), "-o", str(out), "--id-column", "key",
            "--model", "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", srv.base_url,
            "-n", str(N), "--max-tokens", "32", "--concurrency", "2", "--json"]


def _env(cache: Path) -> dict[str, str]:
    return {**os.environ, "BESTOFN_CACHE_DIR": str(cache), "BESTOFN_SERVER_FLAVOUR": "vllm"}


def _ids(path: Path) -> list[str]:
    return [json.loads(line)["id"] for line in path.read_bytes().decode("utf-8").split("\n") if line]


@pytest.mark.slow
def test_twenty_sigkills_then_resume_give_exactly_the_uninterrupted_rows(tmp_path, data_dir):
    with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(PROMPTS)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    rng = random.Random(20240920)
    with LoopbackServer(latency=0.01, flavour="vllm") as srv:
        reference = tmp_path / "reference.jsonl"
        done = subprocess.run(_cmd(prompts, reference, srv), env=_env(tmp_path / "cache-ref"), capture_output=True,
                              text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        total_calls, ref_ids = srv.count, _ids(reference)
        assert len(ref_ids) == len(set(ref_ids)) > PROMPTS // 2

        out, cache = tmp_path / "out.jsonl", tmp_path / "cache"
        kills = partial = attempts = 0
        seen_sizes = []
        while kills < KILLS:
            attempts += 1
            assert attempts < 3 * KILLS, "the build kept finishing before it could be killed"
            start = srv.count
            proc = subprocess.Popen(_cmd(prompts, out, srv), env=_env(cache), stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL)
            if rng.random() < 0.75:  # after a random number of calls: mid-prompt, mid-commit, ...
                # (the server counts a call on arrival; up to 2 x 12 judge calls are in flight at once)
                target = start + rng.randint(1, max(2, 3 * total_calls // (KILLS * 2)))
                while proc.poll() is None and srv.count < target:
                    time.sleep(0.001)
            else:  # at a random moment: start-up, journal repair, the final rewrite
                deadline = time.monotonic() + rng.uniform(0.05, 4.0)
                while proc.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.002)
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
            proc.wait(60)
            if out.exists():
                lines = len(_ids(out)) if out.read_bytes().endswith(b"\n") or not out.read_bytes() else -1
                seen_sizes.append(lines)
                if lines == -1 or 0 < lines < len(ref_ids):  # partial (or torn) output exists at this kill
                    partial += 1
        assert kills == KILLS
        assert partial >= KILLS // 2, f"partial output seen at only {partial} kills: {seen_sizes}"

        done = subprocess.run(_cmd(prompts, out, srv), env=_env(cache), capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        final = json.loads(done.stdout)
        assert final["done_before"] + final["done_now"] == PROMPTS and final["done_before"] > 0
        ids = _ids(out)
        assert len(ids) == len(set(ids))  # duplicates: 0
        assert set(ids) == set(ref_ids)  # rows lost: 0
        assert out.read_bytes() == reference.read_bytes()  # the same rows, in the same order, byte for byte

        before = srv.count
        again = subprocess.run(_cmd(prompts, out, srv), env=_env(cache), capture_output=True, text=True, timeout=600)
        assert again.returncode == 0 and srv.count == before  # finished: zero calls
        assert out.read_bytes() == reference.read_bytes()
    print(f"\n{kills} SIGKILLs in {attempts} attempts; partial output at {partial}; rows {len(ids)}, "
          f"lost {len(set(ref_ids) - set(ids))}, duplicates {len(ids) - len(set(ids))}; sizes {seen_sizes}")
