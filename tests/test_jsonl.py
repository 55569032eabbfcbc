"""One JSONL writer and one reader (bestofn.sinks.jsonl) behind every JSONL file bestofn writes or reads.

Writers: a record holding U+2028, U+2029 or U+0085 (line breaks to `str.splitlines`, not to JSON) stays on one
line in the build's output, the A/B journal and the preference log, and reads back unchanged. Readers: a bad
line is an error naming the file and the line, in every reader; only a journal may end in a torn line, and the
next append cuts it off.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bestofn.sinks import jsonl
from bestofn.apps.ab.gold import GoldPair, GoldSet, load_gold
from bestofn.apps.ab.metrics import ItemResult
from bestofn.apps.ab.runner import PanelRunner, RunSettings, read_journal
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.apps.build import Columns, build
from bestofn.apps.build.inputs import read_prompts
from bestofn.apps.cli.rerank import read_documents
from bestofn.errors import ConfigError
from bestofn.sinks.export import read_rows
from bestofn.records import Message, PreferencePair
from bestofn.pipeline.select import resolve_panel
from bestofn.sinks.log import PreferenceLog
from tests.test_bad_input import scripted_generator

REPO = Path(__file__).resolve().parent.parent
BREAKS = "LS \u2028 PS \u2029 NEL \x85 end"
PANELS = Path(__file__).parent / "ab_panels"


def one_line_per_record(path: Path, count: int) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.count("\n") == count
    assert len(text.splitlines()) == count  # splitlines also breaks on U+2028, U+2029, U+0085


# ---------------------------------------------------------------------------------------------- writers


def test_the_one_line_escapes_what_splitlines_breaks_on_and_lone_surrogates():
    record = {"text": BREAKS, "half": "a \ud83d pair", "plain": "é 漢字 \u202e"}
    text = jsonl.line(record)
    assert text.endswith("\n") and len(text.splitlines()) == 1
    assert "\\u2028" in text and "\\u2029" in text and "\\u0085" in text and "\\ud83d" in text
    assert "é 漢字 \u202e" in text  # everything else stays readable UTF-8
    text.encode("utf-8")  # strict: no lone surrogate reaches the file
    assert json.loads(text) == record


def test_build_output_keeps_one_row_a_line(tmp_path, loopback):
    loopback.hook = scripted_generator([f"answer {i}: {BREAKS}" for i in range(3)])
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(json.dumps({"id": "p", "prompt": f"Say {BREAKS}"}) + "\n", encoding="utf-8")
    out = tmp_path / "out.jsonl"
    summary = build(prompts, out, model="vllm:loopback", judge_model="vllm:loopback", base_url=loopback.base_url,
                    n=3, max_tokens=16, format="trl", strategy="all-pairs", pair_margin=0.0, columns=Columns(id="id"),
                    progress=False)
    assert summary.rows >= 2  # all-pairs of 3 answers, ties left out
    one_line_per_record(out, summary.rows)
    rows = read_rows(out)
    assert len(rows) == summary.rows and all(r["prompt"] == f"Say {BREAKS}" for r in rows)
    assert {r["chosen"] for r in rows} | {r["rejected"] for r in rows} <= {f"answer {i}: {BREAKS}" for i in range(3)}


def _pair(k: int) -> PreferencePair:
    return PreferencePair(
        id=f"pair-{k}", prompt=[Message(role="user", content=f"prompt {k} {BREAKS}")],
        chosen=[Message(role="assistant", content=f"chosen {k} {BREAKS}")],
        rejected=[Message(role="assistant", content="rejected")], score_chosen=0.9, score_rejected=0.1, margin=0.8,
        strategy="best-worst", judges=["j"], template_sha256={}, generator="g", panel="p", seed=0, chosen_id="c",
        rejected_id="r",
    )


def test_the_preference_log_keeps_one_pair_a_line(tmp_path):
    log = PreferenceLog(tmp_path / "pairs.jsonl")
    pairs = [_pair(k) for k in range(3)]
    assert log.write(pairs[:2]) == 2 and log.write(pairs[2:]) == 1
    one_line_per_record(log.path, 3)
    assert [PreferencePair.model_validate(v) for _, v in jsonl.read(log.path)] == pairs


def test_the_ab_journal_keeps_one_result_a_line(tmp_path, loopback):
    items = [GoldPair(id=f"g{i} {BREAKS}", subset=f"sub {BREAKS}", prompt=f"question {i}", response_a=f"a{i}",
                      response_b=f"b{i} longer", label="a", source="test") for i in range(3)]
    gold = GoldSet(name="odd", kind="pairwise", items=items)
    judge = VLLMServerBackend("loopback", base_url=loopback.base_url)
    runner = PanelRunner(resolve_panel(PANELS / "ab_correctness.toml"), RunSettings(judge_model=judge, cache=False))
    journal = tmp_path / "journal.jsonl"
    first = asyncio.run(runner.run(gold, journal=journal))
    one_line_per_record(journal, 3)
    calls = loopback.count
    assert read_journal(journal) == {r.item_id: r for r in first}
    again = asyncio.run(runner.run(gold, journal=journal))  # resumed: every item from the journal
    assert again == first and loopback.count == calls


# ---------------------------------------------------------------------------------------------- readers


def _three_lines(path: Path, bad: bytes, good: bytes = b'{"prompt": "fine"}') -> Path:
    path.write_bytes(good + b"\n" + bad + b"\n" + good + b"\n")
    return path


GOOD = {"jsonl.read": b"[1]", "export.read_rows": b'{"id": "r"}', "rerank documents": b'{"text": "a document"}',
        "gold": b'{"prompt": "q", "response_a": "a", "response_b": "b", "label": "a"}',
        "ab journal": b'{"item_id": "g", "subset": "s", "gold": "a", "pred": "a"}'}
READERS = {"jsonl.read": lambda p: list(jsonl.read(p)), "export.read_rows": read_rows,
           "rerank documents": read_documents, "gold": load_gold, "ab journal": read_journal}
BAD = [(b'{"prompt": oops}', "not valid JSON"), (b'{"prompt": "caf\xe9"}', "not valid UTF-8")]


@pytest.mark.parametrize("bad, why", BAD)
@pytest.mark.parametrize("reader", READERS)
def test_every_reader_names_the_file_and_line_of_a_bad_line(tmp_path, reader, bad, why):
    path = _three_lines(tmp_path / "data.jsonl", bad, GOOD[reader])
    with pytest.raises(ConfigError) as caught:
        READERS[reader](path)
    assert str(caught.value).startswith(f"{path}:2: {why}")
    _three_lines(path, GOOD[reader], GOOD[reader])
    READERS[reader](path)  # the same file without the bad line reads


@pytest.mark.parametrize("bad, why", BAD)
def test_build_inputs_list_a_bad_line_by_file_and_line_and_read_the_rest(tmp_path, bad, why):
    path = _three_lines(tmp_path / "prompts.jsonl", bad, b'{"prompt": "fine"}')
    path.write_bytes(path.read_bytes().replace(b"fine", b"other", 1))  # distinct prompts
    inputs = read_prompts(path)
    assert [r.line for r in inputs.rows] == [1, 3]
    assert [str(i) for i in inputs.issues] == [f"{path}:2: {inputs.issues[0].reason}"]
    assert inputs.issues[0].reason.startswith(why)


def _result(k: int) -> ItemResult:
    return ItemResult(item_id=f"g{k}", subset="s", gold="a", pred="a")


def test_a_torn_last_journal_line_is_skipped_and_cut_off_by_the_next_append(tmp_path):
    journal = tmp_path / "journal.jsonl"
    whole = jsonl.line(_result(0)) + jsonl.line(_result(1))
    journal.write_text(whole + jsonl.line(_result(2))[:25], encoding="utf-8")  # died mid-line
    assert list(read_journal(journal)) == ["g0", "g1"]
    jsonl.append(journal, [_result(3)])
    assert journal.read_text(encoding="utf-8") == whole + jsonl.line(_result(3))
    assert list(read_journal(journal)) == ["g0", "g1", "g3"]


def test_a_torn_line_inside_a_journal_is_an_error(tmp_path):
    journal = tmp_path / "journal.jsonl"
    journal.write_text(jsonl.line(_result(0)) + jsonl.line(_result(1))[:25] + "\n" + jsonl.line(_result(2)),
                       encoding="utf-8")
    with pytest.raises(ConfigError, match=f"^{journal}:2: not valid JSON"):
        read_journal(journal)


def test_an_input_file_with_a_torn_last_line_is_an_error(tmp_path):
    path = tmp_path / "docs.jsonl"
    path.write_bytes(b'{"text": "fine"}\n{"text": "torn')
    with pytest.raises(ConfigError, match=f"^{path}:2: not valid JSON"):
        read_documents(path)
    with pytest.raises(ConfigError, match=f"^{path}:2: not valid JSON"):
        list(jsonl.read(path))
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_bytes(b'{"prompt": "fine"}\n{"prompt": "torn')
    assert [i.line for i in read_prompts(prompts).issues] == [2]


def test_an_append_gives_a_hand_made_last_record_its_newline(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text('{"a": 1}', encoding="utf-8")  # complete, but no newline at the end
    jsonl.append(path, [{"b": 2}])
    assert [v for _, v in jsonl.read(path)] == [{"a": 1}, {"b": 2}]


def test_a_byte_order_mark_and_blank_lines_are_not_records(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n   \n{"b": 2}\n')
    assert list(jsonl.read(path)) == [(1, {"a": 1}), (4, {"b": 2})]


# ---------------------------------------------------------------------------------------------- no fcntl


def test_the_package_imports_and_locks_without_fcntl(tmp_path):
    """As on Windows: `fcntl` cannot be imported. The package, its sinks, cache and journal still import, and the
    journal still refuses a second build on the same output."""
    script = textwrap.dedent(f"""
        import sys, warnings
        sys.modules["fcntl"] = None  # `import fcntl` now raises ImportError
        warnings.simplefilter("ignore")
        import bestofn, bestofn.sinks.log, bestofn.backends.cache, bestofn.apps.build.journal, bestofn.sinks.locking
        from pathlib import Path
        from bestofn.apps.build.journal import Journal
        from bestofn.backends.cache import Cache
        from bestofn.errors import ConfigError
        from bestofn.sinks.log import PreferenceLog
        assert not bestofn.sinks.locking.filelock.has_fcntl  # the locks below really run without flock
        tmp = Path({str(tmp_path)!r})
        held = Journal(tmp / "out.jsonl")
        try:
            Journal(tmp / "out.jsonl")
            raise SystemExit("a second journal on the same output was allowed")
        except ConfigError as exc:
            assert "another build is writing" in str(exc), exc
        held.close()
        Journal(tmp / "out.jsonl").close()
        PreferenceLog(tmp / "pairs.jsonl").write([])
        (tmp / "cache").mkdir()
        (tmp / "cache" / "calls.sqlite").write_bytes(b"not a database" * 100)
        cache = Cache(tmp / "cache")  # rebuilt under the lock
        assert cache.stats.rebuilt == 1
        print("imported and locked without fcntl")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr
    assert "imported and locked without fcntl" in done.stdout


# ---------------------------------------------------------------------------------------------- locks


def test_a_waiting_lock_waits_for_the_holder_and_a_non_waiting_one_refuses(tmp_path):
    import threading
    import time

    from bestofn.sinks.locking import FileLock, LockBusy

    path = tmp_path / "x.lock"
    held = FileLock(path)
    with pytest.raises(LockBusy):
        FileLock(path, wait=False)
    got: list[float] = []

    def waiter() -> None:
        with FileLock(path):
            got.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.3)
    assert not got  # still waiting
    released = time.monotonic()
    held.release()  # from another thread than the waiter's
    thread.join(10)
    assert got and got[0] >= released
    FileLock(path, wait=False).release()  # free again
