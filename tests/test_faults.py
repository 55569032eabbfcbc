"""Faults between bestofn and an OpenAI-compatible server, injected by the loopback server (tests/loopback.py):
429s with every form of Retry-After (and absurd ones), bursts of 500/503, timeouts, connection resets before and
in the middle of a reply, truncated and non-JSON bodies, judge replies that break the schema or the ranges.

What must hold: the SDK's retries are the one retry loop (requests counted at the server: exactly 1 + retries),
absurd waits are capped, never slept; every final failure is a typed error with a clear message, a failed judge
is an `error`/`invalid` Verdict with a reason, nothing partial is stored, and `build` finishes every prompt it can
and lists the others.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import time

import pytest

from bestofn.backends.base import SamplingParams
from bestofn.backends.retry_after import capped, max_retry_after, parse_retry_after
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.apps.build import Columns, build
from bestofn.backends.cache import Cache
from bestofn.errors import BackendError, RateLimitError
from bestofn.judging import JudgeInput, build_judges
from bestofn.config.panel import load_panel
from bestofn.records import Message
from bestofn.pipeline.select import aselect, judge_all
from bestofn.pipeline.generate import generate
from tests.loopback import Fault, LoopbackServer, completion_body, error_body

ASK = [Message(role="user", content="Why is the sky blue?")]
JUDGES = 4  # the default panel


def backend(srv: LoopbackServer, *, retries: int = 2, timeout: float = 10.0) -> VLLMServerBackend:
    return VLLMServerBackend("loopback", base_url=srv.base_url, flavour="vllm", max_retries=retries, timeout=timeout)


def sample(b: VLLMServerBackend, n: int = 2):
    return asyncio.run(b.sample(ASK, SamplingParams(n=n, max_tokens=16)))


def is_judge_call(req) -> bool:
    return bool((req.body or {}).get("response_format"))


# ---------------------------------------------------------------------------------------------- Retry-After


@pytest.mark.parametrize("form", ["seconds", "milliseconds", "http-date"])
def test_retry_after_in_each_form_is_waited_then_retried(loopback, form):
    wait = {"seconds": 0.4, "milliseconds": 0.4, "http-date": None}[form]
    if form == "seconds":
        loopback.inject(429, times=2, retry_after=wait)
    elif form == "milliseconds":
        loopback.inject(429, times=2, headers={"retry-after-ms": "400"})
    else:  # whole seconds only: the next full second, at least 1 s away
        when = math.floor(time.time()) + 2
        loopback.inject(429, times=1, headers={"retry-after": email.utils.formatdate(when, usegmt=True)})
    wall, mono = time.time(), time.monotonic()  # Request.at is on the monotonic clock
    out = sample(backend(loopback, retries=2))
    assert len(out) == 2 and all(c.text for c in out)
    reqs = loopback.chat_requests()
    assert len(reqs) == (2 if form == "http-date" else 3)  # the faults, then one success
    gaps = [b.at - a.done for a, b in zip(reqs, reqs[1:])]
    if form == "http-date":
        assert wall + (reqs[1].at - mono) >= when - 0.05  # waited until the date (not the SDK's 0.5 s backoff)
    else:
        assert all(g >= 0.9 * wait for g in gaps), gaps


@pytest.mark.parametrize("header", [
    {"retry-after": "1e9"},  # 31 years
    {"retry-after": "1e999"},  # inf
    {"retry-after-ms": "86400000"},  # a day, in milliseconds
    {"retry-after": "FAR"},  # an HTTP date a year ahead (filled in below)
    {"retry-after": "-5"},
    {"retry-after": "nan"},
    {"retry-after": "soon"},
])
def test_absurd_retry_after_is_capped_not_slept(loopback, monkeypatch, header):
    monkeypatch.setenv("BESTOFN_MAX_RETRY_AFTER", "0.2")
    if header.get("retry-after") == "FAR":
        header = {"retry-after": email.utils.formatdate(time.time() + 365 * 86400, usegmt=True)}
    loopback.inject(429, times=2, headers=header)
    started = time.monotonic()
    out = sample(backend(loopback, retries=2))
    assert len(out) == 2 and loopback.count == 3  # retried, both times
    # huge waits are capped to 0.2 s; negative/unreadable ones fall back to the SDK's backoff (0.5 s, 1 s)
    assert time.monotonic() - started < 5


def test_retry_after_parsing_and_cap_without_a_server(monkeypatch):
    monkeypatch.delenv("BESTOFN_MAX_RETRY_AFTER", raising=False)
    assert max_retry_after() == 60.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 30, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(30, abs=1)
    assert parse_retry_after({"retry-after-ms": "250"}) == 0.25
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({}) is None
    assert math.isnan(parse_retry_after({"retry-after": "soon"}))
    assert capped(1e9, 60) == 60 and capped(math.inf, 60) == 60 and capped(2.5, 60) == 2.5
    assert capped(-5, 60) is None and capped(0, 60) is None and capped(math.nan, 60) is None
    monkeypatch.setenv("BESTOFN_MAX_RETRY_AFTER", "many")
    with pytest.raises(Exception, match="BESTOFN_MAX_RETRY_AFTER"):
        max_retry_after()


def test_429s_past_the_retries_give_a_rate_limit_error(loopback, monkeypatch):
    monkeypatch.setenv("BESTOFN_MAX_RETRY_AFTER", "0.05")
    loopback.inject(429, times=10, retry_after=1e9)
    with pytest.raises(RateLimitError, match=r"vllm:loopback: rate limited \(429\)"):
        sample(backend(loopback, retries=2))
    assert loopback.count == 3


# ---------------------------------------------------------------------------------------------- 5xx, timeouts


@pytest.mark.parametrize("retries", [0, 1, 3])
@pytest.mark.parametrize("status", [500, 503])
def test_a_burst_longer_than_the_retries_fails_after_exactly_the_retries(loopback, retries, status):
    loopback.inject(status, times=10, retry_after=0.01)
    with pytest.raises(BackendError, match=f"vllm:loopback: HTTP {status}"):
        sample(backend(loopback, retries=retries))
    assert loopback.count == 1 + retries  # one loop: the SDK's, nothing stacked on it


def test_a_burst_shorter_than_the_retries_is_survived(loopback):
    loopback.inject(500, times=1, retry_after=0.01)
    loopback.inject(503, times=2, retry_after=0.01)
    assert len(sample(backend(loopback, retries=3))) == 2
    assert loopback.count == 4


def test_timeouts_are_retried_then_reported(loopback):
    loopback.inject(200, delay=1.5, times=2)  # stall, then (too late) answer
    with pytest.raises(BackendError, match="timed out"):
        sample(backend(loopback, retries=1, timeout=0.3))
    assert loopback.count == 2
    loopback.reset()
    loopback.inject(200, delay=1.5, times=1)  # one stall, then a prompt server
    assert len(sample(backend(loopback, retries=1, timeout=0.3))) == 2
    assert loopback.count == 2


def test_judge_calls_that_keep_failing_are_error_verdicts_after_exactly_the_retries(loopback):
    """Every judge call gets 500s: each judge call is 1 + retries requests (no second loop in the judge layer),
    every verdict is `error` with the HTTP status in its reason, and nothing is ranked, paired or logged."""
    loopback.hook = lambda req: (500, error_body(500, "judge down"), {"retry-after": "0.01"}) if is_judge_call(req) else None
    b = backend(loopback, retries=1)
    n = 3
    sel = asyncio.run(aselect(ASK, n=n, model=b, judge_model=b, cache=False, log=None))
    unique = len({c.id for c in sel.candidates})
    judge_requests = [r for r in loopback.chat_requests() if is_judge_call(r)]
    assert len(judge_requests) == JUDGES * unique * 2
    assert len(sel.verdicts) == JUDGES * unique
    assert all(v.status == "error" and "HTTP 500" in v.reason and "judge down" in v.reason for v in sel.verdicts)
    assert sel.best is None and sel.ranking == [] and sel.pairs == []


# ---------------------------------------------------------------------------------------------- broken transport


def test_a_reset_before_the_reply_or_in_the_middle_of_it_is_retried(loopback):
    loopback.inject(200, action="reset")
    loopback.inject(200, action="midstream")
    b = backend(loopback, retries=2)
    clean = LoopbackServer()  # the same deterministic server with no faults, for the expected texts
    with clean:
        expected = [c.text for c in sample(backend(clean))]
    assert [c.text for c in sample(b)] == expected  # whole replies only: nothing from the cut one
    assert loopback.count == 3 and [r.action for r in loopback.chat_requests()] == ["reset", "midstream", None]


def test_resets_past_the_retries_store_nothing(loopback, tmp_path):
    """The generator's reply is cut mid-body on every attempt: a clear error, no candidate in the cache, no log."""
    loopback.hook = lambda req: Fault(200, action="midstream")
    cache, log = Cache(tmp_path / "cache"), tmp_path / "pairs.jsonl"
    b = backend(loopback, retries=2)
    with pytest.raises(BackendError, match="vllm:loopback: cannot connect"):
        asyncio.run(aselect(ASK, n=2, model=b, judge_model=b, cache=cache, log=log))
    assert loopback.count == 3
    assert len(cache) == 0 and not log.exists()


@pytest.mark.parametrize("fault,message", [
    (Fault(200, action="truncate"), "not valid JSON"),
    (Fault(200, body=b"<html><body>502 Bad Gateway</body></html>", headers={"content-type": "text/html"}),
     "not a chat completion"),
    (Fault(200, body=b'{"object": "chat.completion"}', headers={"content-type": "application/json"}),
     "not a chat completion"),
    (Fault(200, body=b'{"choices": [{"index": 0, "message": {"role": "assistant", "content": "half \\ud800"}, '
                     b'"finish_reason": "stop"}]}'), "lone surrogate"),
])
def test_truncated_or_foreign_bodies_are_clear_errors_and_store_nothing(loopback, tmp_path, fault, message):
    loopback.hook = lambda req: fault
    cache = Cache(tmp_path / "cache")
    b = backend(loopback, retries=2)
    with pytest.raises(BackendError, match=message) as info:
        asyncio.run(generate(b, ASK, n=1, temperature=0.8, max_tokens=16, seed=0))
    assert str(info.value).startswith("vllm:loopback: ")
    with pytest.raises(BackendError, match=message):
        asyncio.run(aselect(ASK, n=2, model=b, judge_model=b, cache=cache, log=tmp_path / "log.jsonl"))
    assert len(cache) == 0 and not (tmp_path / "log.jsonl").exists()


def test_a_truncated_judge_reply_is_an_error_verdict_not_a_crash(loopback):
    loopback.hook = lambda req: Fault(200, action="truncate") if is_judge_call(req) else None
    b = backend(loopback, retries=2)
    sel = asyncio.run(aselect(ASK, n=2, model=b, judge_model=b, cache=False))
    assert sel.verdicts and all(v.status == "error" and "not valid JSON" in v.reason for v in sel.verdicts)
    assert sel.best is None


# ---------------------------------------------------------------------------------------------- judge replies


BAD_REPLIES = [
    ('{"reasoning": "fine", "score": 11}', "stop", "score"),  # out of range
    ('{"reasoning": "fine", "score": 0}', "stop", "score"),
    ('{"reasoning": "fine", "score": 7.5}', "stop", "score"),  # not an integer
    ('{"reasoning": "fine", "score": "9"}', "stop", "score"),  # a string
    ('{"score": 9}', "stop", "reasoning"),  # a field missing
    ('{"reasoning": "fine", "score": 9, "bonus": 1}', "stop", "bonus"),  # an extra field
    ('The answer is good. {"reasoning": "fine", "score": 9}', "stop", "JSON"),  # prose around the JSON
    ("not json at all", "stop", "JSON"),
    ('{"reasoning": "fine", "sco', "length", "max_tokens"),  # cut at max_tokens
]


@pytest.mark.parametrize("reply,finish,field", BAD_REPLIES)
def test_judge_replies_that_break_the_schema_get_one_reask_then_invalid(loopback, reply, finish, field):
    loopback.hook = lambda req: (200, completion_body(reply, finish_reason=finish)) if is_judge_call(req) else None
    b = backend(loopback)
    panel = load_panel("default")
    judges = build_judges(panel, lambda config: b)
    candidates = asyncio.run(generate(b, ASK, n=2, temperature=0.8, max_tokens=16, seed=0))
    before = loopback.count
    verdicts = asyncio.run(judge_all(judges, JudgeInput(prompt=ASK), candidates))
    unique = len({c.id for c in candidates})
    assert loopback.count - before == JUDGES * unique * 2  # the ask and exactly one re-ask each
    assert len(verdicts) == JUDGES * unique
    for v in verdicts:
        assert v.status == "invalid" and v.score is None and v.normalized is None and v.attempts == 2
        assert field in v.reason and v.raw == reply


def test_a_good_reask_reply_is_used(loopback):
    seen: dict[str, int] = {}

    def hook(req):
        if not is_judge_call(req):
            return None
        key = json.dumps(req.body["messages"][:2])
        seen[key] = seen.get(key, 0) + 1
        text = '{"reasoning": "r", "score": 42}' if seen[key] == 1 else '{"reasoning": "ok now", "score": 8}'
        return 200, completion_body(text)

    loopback.hook = hook
    b = backend(loopback)
    sel = asyncio.run(aselect(ASK, n=2, model=b, judge_model=b, cache=False))
    assert all(v.status == "ok" and v.score == 8 and v.attempts == 2 for v in sel.verdicts)
    assert sel.best is not None
    reasks = [r for r in loopback.chat_requests() if is_judge_call(r) and len(r.body["messages"]) > 2]
    assert reasks and all("score" in r.body["messages"][-1]["content"] for r in reasks)  # the reason goes back


def test_judge_reply_breaking_ranges_never_ranks_or_logs(loopback, tmp_path):
    loopback.hook = lambda req: (200, completion_body('{"reasoning": "great", "score": 10000}')) if is_judge_call(req) else None
    b = backend(loopback)
    log = tmp_path / "pairs.jsonl"
    sel = asyncio.run(aselect(ASK, n=3, model=b, judge_model=b, cache=False, log=log))
    assert all(v.status == "invalid" for v in sel.verdicts)
    assert sel.best is None and sel.pairs == [] and sel.stats["unrankable"]
    assert not log.exists() or log.read_text() == ""


# ---------------------------------------------------------------------------------------------- build


def test_build_finishes_every_prompt_it_can_and_lists_the_failures(tmp_path, data_dir):
    with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
        rows = [json.loads(next(fh)) for _ in range(6)]
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    truncated, overloaded = (json.dumps(rows[k]["prompt"])[1:40] for k in (1, 4))  # as they appear in a body

    def hook(req):
        body = json.dumps(req.body)
        if truncated in body and not is_judge_call(req):
            return Fault(200, action="truncate")
        if overloaded in body and is_judge_call(req):
            return Fault(503, retry_after=0.01)
        return None

    options = dict(model="vllm:loopback", judge_model="vllm:loopback", n=2, max_tokens=24, concurrency=3,
                   columns=Columns(id="key"), progress=False)
    with LoopbackServer(flavour="vllm") as srv:
        srv.hook = hook
        out = tmp_path / "out.jsonl"
        first = build(prompts, out, base_url=srv.base_url, **options)
        assert first.done_now == 4 and first.failed == 2  # every other prompt is finished
        failures = sorted(first.failures)
        assert failures[0].startswith(f"{rows[1]['key']} (line 2): ") and "not valid JSON" in failures[0]
        assert failures[1].startswith(f"{rows[4]['key']} (line 5): judge ") and "HTTP 503" in failures[1]
        ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").split("\n") if line]
        assert len(ids) == len(set(ids)) == first.rows > 0

        srv.hook = None  # the faults are over: the next run finishes the two, and only them
        second = build(prompts, out, base_url=srv.base_url, **options)
        assert second.done_before == 4 and second.done_now == 2 and second.failed == 0
        reference = tmp_path / "reference.jsonl"
        build(prompts, reference, base_url=srv.base_url, **options, cache=False)
    ids = [json.loads(line)["id"] for line in out.read_text(encoding="utf-8").split("\n") if line]
    assert len(ids) == len(set(ids))  # no duplicates
    assert out.read_bytes() == reference.read_bytes()  # no row lost: exactly the rows of a run without faults


# ---------------------------------------------------------------------------------------------- anthropic


ANTHROPIC_REPLY = {"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
                   "content": [{"type": "text", "text": "Rayleigh scattering."}], "stop_reason": "end_turn",
                   "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 3}}


@pytest.mark.timeout(60)
def test_anthropic_absurd_retry_after_is_capped_too(loopback, monkeypatch):
    """The anthropic SDK would sleep a server's Retry-After of 1e9 s (it caps at ~50 days): our HTTP client caps
    it first. The loopback server answers /v1/messages through a hook with the Messages API's shape."""
    from bestofn.backends.anthropic import AnthropicBackend

    monkeypatch.setenv("BESTOFN_MAX_RETRY_AFTER", "0.2")
    seen: list[str] = []

    def hook(req):
        seen.append(req.path)
        return Fault(429, headers={"retry-after": "1e9"}) if len(seen) <= 2 else (200, ANTHROPIC_REPLY)

    loopback.hook = hook
    b = AnthropicBackend("claude-x", api_key="k", base_url=loopback.base_url.removesuffix("/v1"), max_retries=2)
    started = time.monotonic()
    (out,) = asyncio.run(b.sample(ASK, SamplingParams(n=1, max_tokens=16)))
    assert out.text == "Rayleigh scattering." and seen == ["/v1/messages"] * 3
    assert time.monotonic() - started < 10

    for body, ctype, message in [(json.dumps(ANTHROPIC_REPLY).encode()[:60], "application/json", "not valid JSON"),
                                 (b"<html>502 Bad Gateway</html>", "text/html", "not a Messages API message")]:
        loopback.hook = lambda req: Fault(200, body=body, headers={"content-type": ctype})
        with pytest.raises(BackendError, match=f"anthropic:claude-x: the server's reply is {message}"):
            asyncio.run(b.sample(ASK, SamplingParams(n=1, max_tokens=16)))
