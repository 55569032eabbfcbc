"""One set of best-of-n options behind `bestofn.wrap` and `bestofn serve` (bestofn.apps.options): per call, the
request's own seed / max_tokens / temperature and its `extra_body={"bestofn": {...}}` beat the defaults, and a
bad value is a clear error naming the option. Every test runs through both, over the loopback protocol server."""

from __future__ import annotations

import json
import re

import httpx2
import openai
import pytest

import bestofn
from bestofn.apps.serve.server import ServeConfig, create_app
from bestofn.backends.vllm import VLLMServerBackend
from bestofn.errors import ConfigError
from bestofn.records import Selection
from tests.test_serve import running

ASK = [{"role": "user", "content": "Why is the sky blue?"}]
DEFAULTS = dict(n=2, seed=7, max_tokens=50, temperature=0.5, pair_margin=0.0, cache=False)


@pytest.fixture(params=["wrap", "serve"])
def chat(request, loopback):
    """`chat(**request) -> Selection` through a wrapped client, or through the server, with DEFAULTS."""
    upstream = VLLMServerBackend("loopback", base_url=loopback.base_url)
    if request.param == "wrap":
        client = bestofn.wrap(openai.OpenAI(base_url=loopback.base_url, api_key="x"), judge_model=upstream, **DEFAULTS)
        yield lambda **kw: client.chat.completions.create(model="loopback", messages=ASK, **kw).selection
        client.close()
    else:
        with running(create_app(model=upstream, judge_model=upstream, **DEFAULTS)) as url:
            client = openai.OpenAI(base_url=url, api_key="x", max_retries=0)
            yield lambda **kw: Selection.model_validate(
                client.chat.completions.create(model="loopback", messages=ASK, **kw).bestofn)


def generation(loopback) -> list[dict]:
    return [r.body for r in loopback.chat_requests() if "response_format" not in r.body]


def test_the_defaults_apply_when_a_request_sets_nothing(chat, loopback):
    sel = chat()
    assert len(sel.candidates) == 2 and sel.panel == "default" and "early_stop" not in sel.stats
    [gen] = generation(loopback)
    assert (gen["n"], gen["seed"], gen["max_tokens"], gen["temperature"]) == (2, 7, 50, 0.5)
    assert all(p.strategy == "best-worst" for p in sel.pairs)


def test_a_request_overrides_beat_the_defaults(chat, loopback):
    sel = chat(seed=3, max_tokens=9, temperature=0.1,
               extra_body={"bestofn": {"n": 4, "panel": "compact", "accept_threshold": 0.0, "wave_size": 2}})
    assert sel.panel == "compact" and {v.judge for v in sel.verdicts} <= {
        "correctness", "safety", "helpfulness", "instruction_following"}
    report = sel.stats["early_stop"]
    assert (report["n"], report["wave_size"], report["threshold"]) == (4, 2, 0.0)
    gen = generation(loopback)
    assert gen[0]["n"] == 2 and {(g["max_tokens"], g["temperature"]) for g in gen} == {(9, 0.1)}
    assert gen[0]["seed"] == 3 and {c.params["seed"] for c in sel.candidates} == {3}
    loopback.reset()
    sel = chat(extra_body={"bestofn": {"n": 4, "strategy": "all-pairs"}})
    assert len(sel.candidates) == 4 and len(sel.pairs) > 1 and {p.strategy for p in sel.pairs} == {"all-pairs"}
    assert [g["seed"] for g in generation(loopback)] == [7]  # the overrides of one call leave the defaults alone


@pytest.mark.parametrize("overrides, option", [
    ({"accept_threshold": 1.5}, "accept_threshold"),
    ({"wave_size": 0}, "wave_size"),
    ({"strategy": "worst"}, "strategy"),
    ({"n": 65}, "n"),
    ({"bogus": 1}, "bogus"),
])
def test_a_bad_override_is_an_error_naming_it_before_any_call(chat, loopback, overrides, option):
    with pytest.raises((ConfigError, openai.APIStatusError)) as caught:
        chat(extra_body={"bestofn": overrides})
    message = caught.value.message if isinstance(caught.value, openai.APIStatusError) else str(caught.value)
    # serve names it bestofn.X, wrap extra_body['bestofn'].X
    assert re.search(rf"bestofn(?:'\])?\.{option}: ", message), message
    assert loopback.count == 0


def test_more_choices_than_candidates_names_n(chat, loopback):
    with pytest.raises((ConfigError, openai.BadRequestError), match="n: 3 choices asked for, but only 2 candidates"):
        chat(n=3, extra_body={"bestofn": {"n": 2}})
    assert loopback.count == 0


@pytest.mark.parametrize("options, option", [
    ({"accept_threshold": 2.0}, "accept_threshold"),
    ({"n": 0}, "n"),
    ({"strategy": "worst"}, "strategy"),
    ({"temperature": -1.0}, "temperature"),
    ({"pair_margin": 3.0}, "pair_margin"),
])
def test_bad_defaults_are_refused_when_the_wrapper_or_server_is_made(loopback, options, option):
    client = openai.OpenAI(base_url=loopback.base_url, api_key="x")
    with pytest.raises(ConfigError, match=rf"^{option}: "):
        bestofn.wrap(client, **options)
    with pytest.raises(ConfigError, match=rf"^{option}: "):
        ServeConfig(**options)


def test_the_server_names_the_bad_option_in_the_error_param(loopback):
    upstream = VLLMServerBackend("loopback", base_url=loopback.base_url)
    with running(create_app(model=upstream, judge_model=upstream, **DEFAULTS)) as url:
        def error(body):
            r = httpx2.post(f"{url}/chat/completions", content=json.dumps({"messages": ASK, **body}),
                            headers={"content-type": "application/json"})
            return r.status_code, r.json()["error"]["param"]

        assert error({"bestofn": {"accept_threshold": 2}}) == (422, "bestofn.accept_threshold")
        assert error({"bestofn": {"panel": "../../etc/passwd"}}) == (400, "bestofn.panel")
        assert error({"n": 3, "bestofn": {"n": 2}}) == (400, "n")
    assert loopback.count == 0
