"""`bestofn build --ray` on a real local Ray cluster (`ray start --head` on 127.0.0.1, 2 CPUs, one per test
session) against the loopback protocol server: the rows equal a single-process build's; a SIGKILLed driver and a
ray.kill'ed actor lose nothing and do nothing twice; a rerun makes no call; bad input rows are reported with
file and row as today; budgets stop it cleanly. The folder's recovery is also tested without Ray."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

#: a single machine's Ray: loopback only, no usage report, no token (nothing but this machine can reach it).
#: Ray reads the first when it is imported (else it swaps 127.0.0.1 for the address of the host's network)
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
for _k, _v in RAY_ENV.items():
    os.environ.setdefault(_k, _v)
ray = pytest.importorskip("ray")

from bestofn.apps.build import Columns, build, read_prompts  # noqa: E402
from bestofn.apps.build import ray as ray_build  # noqa: E402
from bestofn.apps.build.folder import Folder  # noqa: E402
from bestofn.apps.cli.build import ray_flag  # noqa: E402
from bestofn.apps.cli.main import app  # noqa: E402
from bestofn.errors import ConfigError  # noqa: E402
from bestofn.export import to_dataset  # noqa: E402
from bestofn.sinks import jsonl  # noqa: E402
from tests.loopback import LoopbackServer  # noqa: E402

PROMPTS = 24
N = 3
REPO = Path(__file__).resolve().parent.parent


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs, in its own process group (stopped by signal, never `ray stop`,
    which would stop every Ray on the machine); this process joins it. Yields its address."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    temp = tempfile.mkdtemp(prefix="bestofn-ray-")  # short: Ray's socket paths must fit in 107 bytes
    from ray._private import ray_constants

    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)  # for the head and every driver started from here
    loopback = ray_constants.ENABLE_RAY_CLUSTER
    ray_constants.ENABLE_RAY_CLUSTER = False  # in case Ray was imported before this module set the variable
    head = subprocess.Popen(
        [str(Path(sys.executable).with_name("ray")), "start", "--head", "--block", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats",
         f"--temp-dir={temp}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _listening(port):
            assert head.poll() is None and time.monotonic() < deadline, "the Ray head did not start"
            time.sleep(0.5)
        ray.init(address=address, log_to_driver=False)
        yield address
    finally:
        ray.shutdown()
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(10)
        ray_constants.ENABLE_RAY_CLUSTER = loopback
        for k, v in saved.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
        shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def prompts(ifeval_prompts) -> Path:
    return ifeval_prompts(PROMPTS)


@pytest.fixture
def srv(monkeypatch):
    monkeypatch.setenv("BESTOFN_SERVER_FLAVOUR", "vllm")  # forwarded to the actors (BESTOFN_* variables)
    with LoopbackServer(latency=0.01, flavour="vllm") as server:
        yield server


def _options(srv: LoopbackServer, **extra) -> dict:
    return dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url, n=N, max_tokens=32,
                concurrency=3, columns=Columns(id="key"), progress=False, **extra)


def _part_lines(folder: Path) -> list[bytes]:
    return [line for p in sorted(folder.glob("part-*.jsonl")) for line in p.read_bytes().splitlines(keepends=True)]


def _reference(tmp_path: Path, prompts: Path, srv: LoopbackServer, suffix: str = ".jsonl") -> Path:
    ref = tmp_path / f"reference{suffix}"
    assert build(prompts, ref, **_options(srv), cache=False).done_now == PROMPTS
    return ref


def test_rows_equal_the_single_process_build_and_a_rerun_makes_no_call(tmp_path, prompts, srv, cluster,
                                                                        monkeypatch):
    ref = _reference(tmp_path, prompts, srv)
    ref_calls = srv.count
    out = tmp_path / "out"
    start = srv.count
    summary = build(prompts, out, ray=cluster, file_type="jsonl", ray_batch_size=3, **_options(srv), cache=False)
    assert summary.done_now == PROMPTS and summary.failed == 0 and summary.rows > 0
    assert srv.count - start == ref_calls  # every prompt done once: as many calls as the single-process build
    parts = sorted(out.glob("part-*.jsonl"))
    assert len(parts) >= 4 and len({p.name.split("-")[1] for p in parts}) == 2  # both actors committed parts
    assert sorted(_part_lines(out)) == sorted(ref.read_bytes().splitlines(keepends=True))  # byte for byte
    assert not list((out / "_bestofn").glob("**/.*.tmp"))
    assert {node["NodeManagerAddress"] for node in ray.nodes()} == {"127.0.0.1"}  # loopback only

    before = srv.count
    again = build(prompts, out, ray=cluster, file_type="jsonl", ray_batch_size=3, **_options(srv), cache=False)
    assert srv.count == before and again.done_before == PROMPTS and again.done_now == 0 and again.cost.calls == 0
    assert again.rows == summary.rows and again.pairs == summary.pairs

    # Parquet parts (the default), read by bestofn.export.to_dataset and by datasets.load_dataset
    import datasets

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    pq_ref = _reference(tmp_path, prompts, srv, ".parquet")
    pq_out = tmp_path / "pq"
    build(prompts, pq_out, ray=cluster, ray_batch_size=5, **_options(srv))  # from the cache
    expected = sorted(to_dataset(pq_ref).to_list(), key=lambda r: r["id"])
    assert sorted(to_dataset(pq_out).to_list(), key=lambda r: r["id"]) == expected
    loaded = datasets.load_dataset("parquet", data_files=str(pq_out / "part-*.parquet"), split="train",
                                   cache_dir=str(tmp_path / "hf"))
    assert sorted(loaded.to_list(), key=lambda r: r["id"]) == expected


DRIVER = textwrap.dedent("""
    import sys
    from bestofn.apps.build import Columns, build
    build(sys.argv[1], sys.argv[2], ray=sys.argv[3], file_type="jsonl", ray_batch_size=2, model="vllm:loopback",
          judge_model="vllm:loopback", base_url=sys.argv[4], n=3, max_tokens=32, concurrency=2,
          columns=Columns(id="key"), progress=False, cache=False)
""")


def _generated(srv: LoopbackServer, since: int) -> list[str]:
    """The prompts of the generation requests (no response_format: not a judge's) since request `since`."""
    return [r.body["messages"][-1]["content"] for r in srv.requests[since:]
            if r.path.endswith("/chat/completions") and not (r.body or {}).get("response_format")]


def test_a_sigkilled_driver_resumes_with_nothing_lost_or_done_twice(tmp_path, prompts, srv, cluster):
    ref = _reference(tmp_path, prompts, srv)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(prompts), str(out), cluster, srv.base_url],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "_bestofn" / "manifest"
    deadline = time.monotonic() + 120
    while driver.poll() is None and time.monotonic() < deadline:
        if manifest.is_dir() and len(list(manifest.glob("*.json"))) >= 3:
            break
        time.sleep(0.05)
    assert driver.poll() is None, "the driver ended before it could be killed"
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    finished = Folder(out, "jsonl").finished()
    assert 0 < len(finished) < PROMPTS
    texts = {str(json.loads(line)["key"]): json.loads(line)["prompt"] for line in prompts.read_text().splitlines()}

    start = len(srv.requests)
    resumed = build(prompts, out, ray=cluster, file_type="jsonl", ray_batch_size=2, **_options(srv), cache=False)
    assert resumed.done_before == len(finished) and resumed.done_before + resumed.done_now == PROMPTS
    redone = set(_generated(srv, start))
    assert redone == {texts[k] for k in texts if k not in finished}  # the rest, and no finished prompt again
    lines = _part_lines(out)
    ids = [json.loads(line)["id"] for line in lines]
    assert len(ids) == len(set(ids))  # nothing twice
    assert sorted(lines) == sorted(ref.read_bytes().splitlines(keepends=True))  # nothing lost, same bytes
    journal = [r["prompt_id"] for p in (out / "_bestofn" / "journal").glob("*.jsonl") for _, r in jsonl.read(p)]
    assert sorted(journal) == sorted(set(journal)) and len(journal) == PROMPTS  # each prompt committed once

    before = srv.count
    again = build(prompts, out, ray=cluster, file_type="jsonl", ray_batch_size=2, **_options(srv))
    assert srv.count == before and again.done_now == 0 and again.done_before == PROMPTS


class KilledOnce(ray_build.PromptWorker):
    """Right after its first commit (the part on disk, the batch not yet returned), the actor is ray.kill'ed:
    Ray restarts it and runs the batch again. `MARK` records which prompts that commit held."""

    MARK = ""

    def _commit(self, name, done):
        super()._commit(name, done)
        mark = Path(self.MARK)
        if not mark.exists():
            mark.write_text(json.dumps([o.row.id for o in done]))
            ray.kill(ray.get_runtime_context().current_actor, no_restart=False)
            time.sleep(60)  # the kill lands here


def test_an_actor_killed_after_a_commit_is_restarted_and_does_nothing_twice(tmp_path, prompts, srv, cluster,
                                                                             monkeypatch):
    import ray.cloudpickle

    ref = _reference(tmp_path, prompts, srv)
    mark = tmp_path / "killed.json"
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import tests/
    monkeypatch.setattr(KilledOnce, "MARK", str(mark))
    monkeypatch.setattr(ray_build, "PromptWorker", KilledOnce)
    out = tmp_path / "out"
    start = len(srv.requests)
    try:
        summary = build(prompts, out, ray=cluster, file_type="jsonl", ray_batch_size=2, **_options(srv), cache=False)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert mark.exists(), "no commit was made"
    restarts = [a["NumRestarts"] for a in ray._private.state.actors().values() if "KilledOnce" in a["ActorClassName"]]
    assert max(restarts) >= 1, "the actor was not killed and restarted"
    assert summary.done_now == PROMPTS and summary.failed == 0
    lines = _part_lines(out)
    assert sorted(lines) == sorted(ref.read_bytes().splitlines(keepends=True))
    committed = {json.loads(line)["prompt"][0]["content"] for line in lines
                 if json.loads(line)["prompt_id"] in json.loads(mark.read_text())}
    generated = _generated(srv, start)
    assert committed and all(generated.count(text) == 1 for text in committed)  # committed before the kill: once


def test_bad_rows_are_reported_with_file_and_row_as_today(tmp_path, srv, cluster):
    good = [{"prompt": f"Question {i}: why is the sky blue?"} for i in range(4)]
    lines = [json.dumps(good[0]), "{not json", json.dumps({"prompt": ""}), json.dumps(good[1]), "",
             json.dumps(good[0]), json.dumps({"messages": [{"role": "user", "content": 3}]}), json.dumps(good[2])]
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n")
    expected = [str(i) for i in read_prompts(path).issues]
    assert len(expected) == 4
    out = tmp_path / "out"
    runner = CliRunner()
    args = ["build", str(path), "-o", str(out), f"--ray={cluster}", "--file-type", "jsonl", "--model",
            "vllm:loopback", "--judge-model", "vllm:loopback", "--base-url", srv.base_url, "-n", "2",
            "--max-tokens", "16", "--json"]
    result = runner.invoke(app, args)
    summary = json.loads(result.stdout)
    assert result.exit_code == 0, result.output
    assert summary["input_issues"] == expected and summary["input_records"] == 7
    assert summary["prompts"] == 3 and summary["done_now"] == 3
    assert summary["skipped"]["bad input: duplicate"] == 1 and summary["skipped"]["bad input: invalid record"] == 3

    csv = tmp_path / "bad.csv"
    csv.write_text('prompt,id\n"fine, thanks",a\n,b\n"too",c,extra\n')
    with pytest.raises(ConfigError) as single:
        build(csv, tmp_path / "single.jsonl", on_error="stop", **_options(srv))
    with pytest.raises(ConfigError) as on_ray:
        build(csv, tmp_path / "csv", ray=cluster, on_error="stop", **_options(srv))
    assert str(on_ray.value) == str(single.value) == f"{csv}:3: prompt: empty prompt (and 1 more)"


def test_a_budget_stops_a_ray_build_cleanly_and_the_rerun_goes_on(tmp_path, prompts, srv, cluster):
    ref = tmp_path / "reference.jsonl"
    per_prompt = build(prompts, ref, **_options(srv), cache=False).cost.calls // PROMPTS
    out = tmp_path / "out"
    options = dict(ray=cluster, file_type="jsonl", ray_batch_size=2, **_options(srv), cache=False)
    budget = per_prompt * 6
    first = build(prompts, out, max_calls=budget, **options)
    assert first.budget_stop and first.budget_stop.startswith(f"--max-calls {budget} reached")
    assert 0 < first.done_now < PROMPTS and first.failed == 0
    assert budget <= first.cost.calls <= budget + 2 * 3 * per_prompt  # at most the prompts in flight more
    second = build(prompts, out, max_calls=budget, **options)  # the same budget: as much again, from where it was
    assert second.budget_stop and second.done_before == first.done_now and 0 < second.done_now
    assert budget <= second.cost.calls <= budget + 2 * 3 * per_prompt
    last = build(prompts, out, **options)
    assert last.budget_stop is None and last.done_before + last.done_now == PROMPTS
    assert sorted(_part_lines(out)) == sorted(ref.read_bytes().splitlines(keepends=True))


# -- without Ray ---------------------------------------------------------------------------------------------


def _commit(folder: Folder, name: str, ids: list[str]) -> None:
    records = [{"prompt_id": i, "selection": {}} for i in ids]
    rows = [{"id": f"row-{i}", "prompt_id": i} for i in ids]
    folder.commit(name, records, rows, {i: {"line": 1, "reason": None, "info": {}, "no_row": None} for i in ids})


def test_recovery_keeps_each_prompt_once_and_undoes_a_commit_cut_short(tmp_path):
    folder = Folder(tmp_path / "out", "jsonl", lock=True)
    try:
        folder.check_settings({"n": 3})
        _commit(folder, "a-000000", ["p1", "p2"])
        _commit(folder, "b-000000", ["p2", "p3"])  # p2 twice: a batch Ray retried after it had committed
        _commit(folder, "c-000000", ["p4"])
        (folder.manifest / "c-000000.json").unlink()  # cut short before its manifest entry: not committed
        _commit(folder, "d-000000", ["p5"])
        (folder.out / "part-d-000000.jsonl").unlink()  # an entry whose part is gone: not committed either
        (folder.out / ".part-e-000000.jsonl.tmp").write_text("half")
        entries = folder.recover()
        assert {n: sorted(e["prompts"]) for n, e in entries.items()} == {"a-000000": ["p1", "p2"], "b-000000": ["p3"]}
        rows = [json.loads(line) for line in _part_lines(folder.out)]
        assert sorted(r["prompt_id"] for r in rows) == ["p1", "p2", "p3"]
        assert sorted(p.name for p in folder.out.iterdir()) == ["_bestofn", "part-a-000000.jsonl", "part-b-000000.jsonl"]
        assert sorted(r["prompt_id"] for r in folder.records(entries)) == ["p1", "p2", "p3"]
        assert folder.recover() == entries  # nothing more to do
        with pytest.raises(ConfigError, match=r"other settings \(n: 3 -> 4\)"):
            folder.check_settings({"n": 4})
        with pytest.raises(ConfigError, match="another build is writing"):
            Folder(tmp_path / "out", "jsonl", lock=True)
    finally:
        folder.close()


def test_ray_alone_means_a_local_ray():
    assert ray_flag(["build", "p.jsonl", "--ray", "-o", "out"]) == ["build", "p.jsonl", "--ray=local", "-o", "out"]
    assert ray_flag(["build", "p.jsonl", "-o", "out", "--ray"])[-1] == "--ray=local"
    assert ray_flag(["build", "p.jsonl", "--ray", "auto", "-o", "o"]) == ["build", "p.jsonl", "--ray", "auto", "-o", "o"]
