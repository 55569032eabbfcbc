"""Bad input: each kind gets one clear error (naming what and where), and odd but valid text comes back out of the
log and every export byte for byte. Long text: a token budget is enforced before each judge call, and stored
text is never cut."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from bestofn.backends.vllm import VLLMServerBackend
from bestofn.apps.build import Columns, build
from bestofn.apps.build.inputs import read_prompts
from bestofn.errors import BackendError, ConfigError
from bestofn.sinks.export import read_rows
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.budget import DEFAULT_MAX_INPUT_TOKENS
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import load_panel
from bestofn.records import Candidate, Message, as_messages, text_id
from bestofn.pipeline.select import aselect, select
from tests.loopback import LoopbackServer, completion_body

REPO = Path(__file__).resolve().parent.parent
ODD = [
    "NUL \x00 inside, a tab\t and a bell \x07",
    "bidi \u202eevil\u202c \u2067isolate\u2069 \u200f",
    "emoji 👍🏽 combining e\u0301 CJK 漢字 RTL שלום",
    "breaks: \u2028 \u2029 \x85 \r\n \r and \\ \" quotes",
]
LONG = 100_000


def loopback_backend(srv: LoopbackServer) -> VLLMServerBackend:
    return VLLMServerBackend("loopback", base_url=srv.base_url, flavour="vllm", max_retries=0)


def scripted_generator(texts: list[str]):
    """A loopback hook: generation requests get `texts` as their choices; judge requests are answered normally."""

    def hook(req):
        body = req.body or {}
        if body.get("response_format"):
            return None
        out = completion_body("x", n=body.get("n", 1))
        for i, choice in enumerate(out["choices"]):
            choice["message"]["content"] = texts[i % len(texts)]
        return 200, out

    return hook


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bestofn", *args], capture_output=True, text=True, timeout=120,
                          cwd=REPO)


# ---------------------------------------------------------------------------------------------- clear errors


@pytest.mark.parametrize("prompt,message", [
    ("", "no non-empty user message"),
    ("   \n\t", "no non-empty user message"),
    ([], "no messages"),
    ([{"role": "system", "content": "be nice"}], "no non-empty user message"),
    ([{"role": "user", "content": 42}], "content"),  # a wrong JSON type
    ([{"role": "robot", "content": "hi"}], "role"),
    ("half a pair \ud83d here", r"lone surrogate U\+D83D at character 12"),
])
def test_bad_prompts_are_clear_errors_before_any_call(prompt, message):
    with pytest.raises(ValueError, match=message):
        as_messages(prompt)
    with pytest.raises(ValueError, match=message):
        select(prompt, model="vllm:never-called", base_url="http://127.0.0.1:9/v1")


@pytest.mark.parametrize("n", [0, -1, 65, 10_000])
def test_n_out_of_range_is_a_clear_error(n):
    with pytest.raises(ConfigError, match=f"n must be between 1 and 64, got {n}"):
        select("hi", n=n, model="vllm:never-called", base_url="http://127.0.0.1:9/v1")


def test_unknown_names_are_clear_errors(tmp_path, loopback):
    with pytest.raises(ConfigError, match="nope"):
        load_panel("nope")
    with pytest.raises(ConfigError, match="has no judge 'nope'"):
        load_panel("default").judge("nope")
    bad_rubric = tmp_path / "bad_rubric.toml"
    bad_rubric.write_text('name = "x"\n[[judge]]\nname = "correctness"\nrubric = "no-such-rubric.v9"\n')
    with pytest.raises(ConfigError, match="no-such-rubric.v9"):
        build_judges(load_panel(bad_rubric), lambda c: None)
    bad_veto = tmp_path / "bad_veto.toml"
    bad_veto.write_text('name = "x"\nsafety_veto = { judge = "ghost", below = 4 }\n'
                        '[[judge]]\nname = "correctness"\nrubric = "correctness.v1"\n')
    with pytest.raises(ConfigError, match=r"bad_veto.toml.*ghost"):
        load_panel(bad_veto)
    bad_kind = tmp_path / "bad_kind.toml"
    bad_kind.write_text('name = "x"\n[[judge]]\nname = "correctness"\nkind = "oracle"\nrubric = "correctness.v1"\n')
    with pytest.raises(ConfigError, match=r"bad_kind.toml: judge 'correctness': kind 'oracle' is unknown"):
        load_panel(bad_kind)
    # a template that needs a variable nobody gives: named, with the template's path, before any judge call
    template = tmp_path / "needs_more.md.j2"
    template.write_text("{% block system %}Grade {{ low }}-{{ high }} by {{ house_style }}.{% endblock %}"
                        "{% block user %}{{ question }} {{ answer }}{% endblock %}")
    panel = tmp_path / "needs_more.toml"
    panel.write_text(f'name = "x"\n[[judge]]\nname = "correctness"\nrubric = "{template}"\n')
    b = loopback_backend(loopback)
    with pytest.raises(ConfigError, match=r"needs_more.md.j2: 'house_style' is undefined"):
        select("hi", n=2, model=b, judge_model=b, panel=panel, cache=False)
    assert all(not r.body.get("response_format") for r in loopback.chat_requests())  # no judge call was made


def test_the_cli_prints_one_clear_line_and_exits_non_zero():
    for args, message in [
        (["run", ""], "error: the prompt has no non-empty user message"),
        (["run", "hi", "-n", "0"], "error: n must be between 1 and 64, got 0"),
        (["run", "hi", "--panel", "nope"], "nope"),
    ]:
        done = cli(*args)
        assert done.returncode != 0, args
        assert done.stderr.strip().startswith(message) or message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_bad_input_files_are_listed_line_by_line(tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        b'{"id": "a", "prompt": "a fine prompt"}',
        b'{"id": "b", "prompt": "caf\xe9 in Latin-1, not UTF-8"}',  # invalid UTF-8
        b'{"id": "c", "prompt": 123}',  # wrong JSON types
        b'{"id": "d", "messages": "hello"}',
        b'["a", "list"]',
        b'{"id": {"x": 1}, "prompt": "an object as an id"}',
        b'{"id": "g", "prompt": "ok", "constraints": [1, 2]}',
        b'{"id": "h", "prompt": "half a pair \\ud83d"}',  # a JSON escape that decodes to a lone surrogate
        b'{"id": "i", "prompt": "odd but valid \\u0000 \\u202e \\u2028"}',
        b'{"id": "j", "prompt": ',  # torn
    ]
    path.write_bytes(b"\n".join(lines) + b"\n")
    inputs = read_prompts(path)
    assert [r.id for r in inputs.rows] == ["a", "i"]
    assert inputs.rows[1].messages[0].content == "odd but valid \x00 \u202e \u2028"
    issues = {i.line: i.reason for i in inputs.issues}
    assert sorted(issues) == [2, 3, 4, 5, 6, 7, 8, 10]
    assert "not valid UTF-8" in issues[2] and "\\xe9" in issues[2]
    assert "prompt: expected a string, got int" in issues[3]
    assert "messages: not a JSON list" in issues[4]
    assert "expected an object" in issues[5]
    assert "id: expected a string or an integer, got dict" in issues[6]
    assert "constraints: expected an object, got list" in issues[7]
    assert "lone surrogate U+D83D" in issues[8]
    assert "not valid JSON" in issues[10]
    csv_path = tmp_path / "prompts.csv"
    csv_path.write_bytes(b"id,prompt\n1,caf\xe9\n")
    with pytest.raises(ConfigError, match=r"prompts.csv: not valid UTF-8 \(byte 16 of the file\)"):
        read_prompts(csv_path)


# ---------------------------------------------------------------------------------------------- long text


def test_a_100k_character_candidate_is_refused_by_the_judges_not_cut(loopback, tmp_path):
    long = ("All work and no play makes Jack a dull boy. " * 3000)[:LONG]
    loopback.hook = scripted_generator([long, "Short and sweet."])
    b = loopback_backend(loopback)
    log = tmp_path / "pairs.jsonl"
    sel = asyncio.run(aselect("Say something.", n=2, model=b, judge_model=b, cache=False, log=log, pair_margin=0))
    long_c = next(c for c in sel.candidates if c.text == long)  # stored whole
    assert len(long_c.text) == LONG
    refused = sel.verdicts_for(long_c.id)
    assert len(refused) == 4 and all(v.status == "invalid" for v in refused)
    assert all(f"over its budget of {DEFAULT_MAX_INPUT_TOKENS:,}" in v.reason and "no text was cut" in v.reason
               for v in refused)
    assert not any(long[:200] in json.dumps(r.body) for r in loopback.chat_requests() if r.body.get("response_format"))
    assert sel.best is not None and sel.best.text == "Short and sweet."
    assert long_c.id in sel.stats["unrankable"]


def test_a_100k_character_candidate_within_a_raised_budget_is_judged_and_logged_whole(loopback, tmp_path, monkeypatch):
    monkeypatch.setenv("BESTOFN_JUDGE_MAX_INPUT_TOKENS", "200000")
    rng = random.Random(9)  # varied words: a repeated block would be flagged content-free and demoted
    words = "é 漢字 👍🏽 water boils at sea level while ice melts slowly in the warm spring sun".split()
    long = " ".join(rng.choice(words) + str(rng.randint(0, 99)) for _ in range(LONG // 4))[:LONG]
    loopback.hook = scripted_generator([long, "Short and sweet."])
    b = loopback_backend(loopback)
    log = tmp_path / "pairs.jsonl"
    no_veto = load_panel("default").model_copy(update={"safety_veto": None})  # the loopback's scores are random
    sel = asyncio.run(aselect("Say something.", n=2, model=b, judge_model=b, cache=False, log=log, pair_margin=0,
                              panel=no_veto))
    assert all(v.status == "ok" for v in sel.verdicts)
    (line,) = log.read_text(encoding="utf-8").split("\n")[:-1]
    pair = json.loads(line)
    assert long in (pair["chosen"][0]["content"], pair["rejected"][0]["content"])  # whole, byte for byte


def test_a_100k_character_prompt_is_refused_by_the_judges_and_kept_whole(loopback):
    prompt = ("Summarise: " + "the quick brown fox jumps over the lazy dog " * 2500)[:LONG]
    b = loopback_backend(loopback)
    sel = asyncio.run(aselect(prompt, n=2, model=b, judge_model=b, cache=False))
    assert sel.prompt[0].content == prompt
    assert sel.verdicts and all(v.status == "invalid" and "budget" in v.reason for v in sel.verdicts)
    assert sel.best is None
    assert loopback.count == 1  # the generation only: no judge call was sent


def test_the_local_judge_counts_with_its_own_tokenizer_and_makes_no_call(local_backend):
    meter = Meter()
    judged = MeteredBackend(local_backend, meter)
    (judge,) = build_judges(load_panel("default").model_copy(update={"judges": load_panel("default").judges[:1]}),
                            lambda c: judged)
    long = ("Water boils at one hundred degrees Celsius at sea level. " * 2000)[:LONG]
    candidate = Candidate(id=text_id(long), index=0, text=long, model="test")
    (verdict,) = asyncio.run(judge.judge(JudgeInput(prompt=[Message(role="user", content="When does water boil?")]),
                                         [candidate]))
    assert verdict.status == "invalid" and "the model's tokenizer" in verdict.reason
    assert "context 8192 - max_tokens 384" in verdict.reason
    assert meter.spend.calls == 0 and candidate.text == long
    with pytest.raises(BackendError, match="context window"):  # generation: the backend's own clear error
        asyncio.run(local_backend.sample([Message(role="user", content=long)],
                                         __import__("bestofn").backends.SamplingParams(n=1, max_tokens=8)))


# ---------------------------------------------------------------------------------------------- round trips


def test_odd_text_round_trips_through_the_log(loopback, tmp_path):
    loopback.hook = scripted_generator(ODD)
    b = loopback_backend(loopback)
    prompt = "Echo this: " + ODD[0] + ODD[3]
    log = tmp_path / "pairs.jsonl"
    sel = asyncio.run(aselect(prompt, n=len(ODD), model=b, judge_model=b, cache=False, log=log,
                              strategy="all-pairs", pair_margin=0))
    assert sorted(c.text for c in sel.candidates) == sorted(ODD) and sel.pairs
    raw = log.read_bytes()
    assert len(raw.decode("utf-8").splitlines()) == len(sel.pairs)  # escaped line breaks: one record per line
    for line, pair in zip(raw.decode("utf-8").split("\n"), sel.pairs):
        got = json.loads(line)
        assert got["prompt"][0]["content"] == prompt
        assert got["chosen"][0]["content"] == pair.chosen[0].content in ODD
        assert got["rejected"][0]["content"] == pair.rejected[0].content in ODD


@pytest.mark.parametrize("fmt,suffix", [("trl-conversational", ".jsonl"), ("trl", ".jsonl"), ("kto", ".parquet"),
                                        ("full", ".parquet")])
def test_odd_text_round_trips_through_the_exports(tmp_path, fmt, suffix):
    prompts = tmp_path / "prompts.jsonl"
    odd_prompt = "Repeat: " + " | ".join(ODD)
    prompts.write_text(json.dumps({"id": "odd", "prompt": odd_prompt}) + "\n", encoding="utf-8")
    with LoopbackServer(flavour="vllm") as srv:
        srv.hook = scripted_generator(ODD)
        out = tmp_path / f"out{suffix}"
        summary = build(prompts, out, model="vllm:loopback", judge_model="vllm:loopback", base_url=srv.base_url,
                        n=len(ODD), max_tokens=32, format=fmt, strategy="all-pairs", pair_margin=0.0,
                        columns=Columns(id="id"), progress=False)
    assert summary.done_now == 1 and summary.rows > 0
    rows = read_rows(out)
    assert len(rows) == summary.rows
    seen = set()
    for row in rows:
        blob = json.dumps(row, ensure_ascii=False)
        assert odd_prompt in blob or json.dumps(odd_prompt, ensure_ascii=False)[1:-1] in blob
        for text in ODD:
            if json.dumps(text, ensure_ascii=False)[1:-1] in blob:
                seen.add(text)
    assert seen == set(ODD)  # every odd candidate came back, exactly as generated
    if fmt == "trl":
        assert all(r["prompt"] == odd_prompt and r["chosen"] in ODD and r["rejected"] in ODD for r in rows)
    if fmt == "kto":
        assert all(r["completion"][0]["content"] in ODD for r in rows)
