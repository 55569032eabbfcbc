"""One registry mechanism (bestofn/registry.py) for backends, judge kinds and verifier checks, and the optional
backend traits declared on Backend with defaults that wrappers (cache, meter) pass through.

The third-party plug-in here is real packaging metadata: a `*.dist-info` folder with an `entry_points.txt` on
sys.path, found by importlib.metadata exactly as an installed package's would be.
"""

from __future__ import annotations

import textwrap

import pytest

from bestofn import backends
from bestofn.backends import BACKENDS, load_backend, register_backend
from bestofn.backends.base import Backend, Completion, SamplingParams, innermost
from bestofn.backends.cache import Cache, CachedBackend
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import KIND_NAMES, load_panel
from bestofn.errors import ConfigError
from bestofn.judging import KINDS
from bestofn.judging.budget import DEFAULT_MAX_INPUT_TOKENS, budget_for, prompt_tokens
from bestofn.judging.verifiers import CHECKS, require
from bestofn.pipeline.schedule import _settle
from bestofn.pipeline.select import aselect
from bestofn.records import Message, Usage
from bestofn.registry import Registry

PLUGIN = '''
from dataclasses import dataclass
from typing import ClassVar

from bestofn.backends.base import Backend, Completion
from bestofn.judging.base import Judge
from bestofn.judging.verifiers import Verifier
from bestofn.judging.verifiers.base import CheckResult
from bestofn.records import Usage, Verdict

TEXTS = ["HELLO", "hello there", "HELLO THERE FRIEND"]


class EchoBackend(Backend):
    """A minimal third-party backend: `sample` and nothing else (every trait is Backend's default)."""

    calls = 0

    def __init__(self, model):
        self.spec = f"echo:{model}"

    async def sample(self, messages, params):
        EchoBackend.calls += params.n
        return [Completion(text=TEXTS[(params.seed + i) % 3], finish_reason="stop",
                           usage=Usage(prompt_tokens=3, completion_tokens=2)) for i in range(params.n)]


@dataclass
class LengthJudge(Judge):
    """A third-party judge kind: longer is better, no model."""

    pointwise: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False

    async def judge(self, item, candidates):
        return [Verdict(judge=self.name, kind="rubric", candidate_ids=[c.id], status="ok",
                        score=len(c.text), normalized=min(1.0, len(c.text) / 100)) for c in candidates]


def _shout(text, constraints, reference=None):
    return CheckResult({"shout": text.isupper()})


SHOUT = Verifier(lambda constraints, reference: bool(constraints.get("shout")), _shout, "shout: true")
'''

ENTRY_POINTS = """
[bestofn.backends]
echo = bestofn_demo_plugin:EchoBackend

[bestofn.judges]
length = bestofn_demo_plugin:LengthJudge

[bestofn.verifiers]
shout = bestofn_demo_plugin:SHOUT
"""

PANEL = """
name = "plugged"
[[judge]]
name = "long"
kind = "length"
[[judge]]
name = "loud"
kind = "verifier"
check = "shout"
"""

MSGS = [Message(role="user", content="hi")]


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """Install the demo plug-in the way pip would leave it (module + dist-info with entry points); every
    registry forgets what it loaded from it afterwards."""
    site = tmp_path / "site"
    (site / "bestofn_demo_plugin-0.1.dist-info").mkdir(parents=True)
    (site / "bestofn_demo_plugin-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: bestofn-demo-plugin\nVersion: 0.1\n")
    (site / "bestofn_demo_plugin-0.1.dist-info" / "entry_points.txt").write_text(ENTRY_POINTS)
    (site / "bestofn_demo_plugin.py").write_text(PLUGIN)
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delitem(__import__("sys").modules, "bestofn_demo_plugin", raising=False)
    for registry in (BACKENDS, KINDS, CHECKS):
        monkeypatch.setattr(registry, "_loaded", dict(registry._loaded))
        monkeypatch.setattr(registry, "_targets", dict(registry._targets))
    monkeypatch.setattr(backends, "_instances", {})
    return site


async def test_a_plugged_backend_judge_kind_and_check_are_found_and_used(plugin, tmp_path):
    assert "echo" in BACKENDS and "length" in KINDS and "shout" in CHECKS
    panel = tmp_path / "plugged.toml"
    panel.write_text(PANEL)
    run = dict(n=3, model="echo:x", panel=panel, cache=tmp_path / "cache", constraints={"shout": True})
    first = await aselect("hi", **run)
    echo = type(innermost(load_backend("echo:x")))
    assert echo.__module__ == "bestofn_demo_plugin" and echo.calls == 3
    assert first.best.text == "HELLO THERE FRIEND"  # the longest of the two that shout
    by_judge = {v.judge: v for v in first.verdicts if v.candidate_ids == [first.best.id]}
    assert by_judge["long"].score == len("HELLO THERE FRIEND") and by_judge["loud"].criteria == {"shout": 1.0}
    # the backend overrides no trait: the defaults carry it through the meter (unpriced) and the cache (a rerun
    # is answered from it: resolve() is a no-op, the key holds no model name, cacheable)
    assert (first.cost.calls, first.cost.cache_hits, first.cost.usd, first.cost.unpriced_calls) == (3, 0, None, 3)
    second = await aselect("hi", **run)
    assert echo.calls == 3 and (second.cost.calls, second.cost.cache_hits) == (0, 3)
    assert second.best.text == first.best.text


def test_registered_names_win_over_entry_points(plugin):
    class Other(Backend):
        def __init__(self, model: str) -> None:
            self.spec = f"other:{model}"

        async def sample(self, messages, params):  # pragma: no cover - never called
            raise AssertionError

    plugged = load_backend("echo:y")
    assert type(plugged).__name__ == "EchoBackend"
    register_backend("echo", Other)  # an object; a "module:Class" string works the same
    assert isinstance(load_backend("echo:y"), Other)  # the instance made from the entry point was dropped
    register_backend("echo", "bestofn_demo_plugin:EchoBackend")
    assert type(load_backend("echo:y")).__name__ == "EchoBackend"


def test_unknown_names_say_what_and_list_the_known_ones(plugin, tmp_path):
    assert {"echo", "local", "openai"} <= set(BACKENDS.names()) and "length" in KINDS.names()
    with pytest.raises(ConfigError) as info:
        load_backend("nosuch:x")
    assert str(info.value) == f"model spec 'nosuch:x': unknown backend 'nosuch'; known: {', '.join(BACKENDS.names())}"
    with pytest.raises(ConfigError) as info:
        require(["bogus"])
    assert str(info.value) == f"unknown verifier check 'bogus'; known: {', '.join(CHECKS.names())}"
    assert CHECKS.names()[-1] == "shout"
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[[judge]]\nname = "j"\nkind = "bogus"\n')
    with pytest.raises(ConfigError) as info:
        load_panel(path)  # the panel file names the built-in kinds, then the third parties'
    assert str(info.value).endswith(f"judge 'j': kind 'bogus' is unknown; use one of {', '.join(KIND_NAMES)}, length")
    with pytest.raises(ConfigError) as info:
        KINDS.load("bogus", where="panel 'p': judge 'j': ")
    assert str(info.value) == f"panel 'p': judge 'j': unknown judge kind 'bogus'; known: {', '.join(KINDS.names())}"


def test_a_target_that_does_not_import_is_one_clear_error():
    registry: Registry[object] = Registry("widget", "bestofn.test-widgets", {
        "gone": "bestofn_no_such_module:Thing", "typo": "bestofn.records:Nope", "ok": "bestofn.records:Usage"})
    assert registry["ok"] is Usage and registry.names() == ["gone", "ok", "typo"]
    with pytest.raises(ConfigError, match=r"^widget 'gone' names 'bestofn_no_such_module:Thing', which cannot be "
                                          r"imported"):
        registry.load("gone")
    with pytest.raises(ConfigError, match=r"^widget 'typo' names 'bestofn.records:Nope', which has no 'Nope'$"):
        registry.load("typo")


class Bare(Backend):
    """Only `sample`: every optional trait is Backend's default."""

    spec = "bare"

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        return [Completion(text="ok") for _ in range(params.n)]


class Rich(Bare):
    """Overrides the traits: the wrappers must show these, not Backend's defaults."""

    spec, model, base_url, context_window, price = "rich", "m", "http://h/v1", 1000, (1.0, 2.0)
    resolved = 0

    async def resolve(self) -> str:
        Rich.resolved += 1
        self.serial = True  # learnt from the other side
        return "learnt"

    async def count_tokens(self, text: str) -> int:
        return len(text.split())


def wrapped(backend: Backend, tmp_path) -> Backend:
    return MeteredBackend(CachedBackend(backend, Cache(tmp_path)), Meter())


async def test_wrappers_pass_every_trait_of_the_backend_through(tmp_path):
    bare, rich = wrapped(Bare(), tmp_path), wrapped(Rich(), tmp_path)
    assert (bare.spec, bare.model, bare.base_url, bare.serial, bare.context_window, bare.price, bare.cacheable) == \
        ("bare", "", None, False, None, None, True)
    assert (rich.spec, rich.model, rich.base_url, rich.context_window, rich.price) == \
        ("rich", "m", "http://h/v1", 1000, (1.0, 2.0))
    long = [Message(role="user", content="word " * 40_000)]  # 200,000 bytes: over any budget, so it is counted
    assert budget_for(bare, 100) == (DEFAULT_MAX_INPUT_TOKENS, "the default judge input budget "
                                                              "(BESTOFN_JUDGE_MAX_INPUT_TOKENS)")
    assert budget_for(rich, 100) == (900, "context 1000 - max_tokens 100")
    assert await prompt_tokens(bare, long, 900) == (66_667 + 8, "estimated at 3 bytes a token")
    assert await prompt_tokens(rich, long, 900) == (40_000 + 8, "the model's tokenizer")


async def test_settle_resolves_each_backend_once_through_its_wrappers(tmp_path):
    rich = Rich()
    judges = [wrapped(rich, tmp_path), wrapped(rich, tmp_path), wrapped(Bare(), tmp_path)]
    before = Rich.resolved
    assert not judges[0].serial
    await _settle(judges)
    assert Rich.resolved == before + 1 and judges[0].serial and judges[1].serial and not judges[2].serial

