"""A [[judge]] key that the judge's kind never reads is an error naming the file, the judge and the key, and
the table behind that check (bestofn.panel.JUDGE_KEYS) is what the judge classes really read."""

import ast
import inspect
from pathlib import Path

import pytest

from bestofn.errors import ConfigError
from bestofn.judging import KINDS, build_judges
from bestofn.judging.compact import CompactJudge
from bestofn.config.panel import JUDGE_KEYS, JudgeConfig, load_panel
from tests.fake_backend import FakeBackend

ROOT = Path(__file__).resolve().parent.parent
#: what the pipeline reads, not the judge class: build_judges and the backend choice, the aggregate, the panel
PIPELINE = {"name", "kind", "weight", "gate", "gate_pass", "model", "base_url", "temperature", "max_tokens"}
#: the judge classes behind each form (a rubric judge with criteria is a CompactJudge)
CLASSES = {"rubric": [KINDS["rubric"], CompactJudge], "per-criterion": [CompactJudge],
           "pairwise": [KINDS["pairwise"]], "listwise": [KINDS["listwise"]], "verifier": [KINDS["verifier"]],
           "consensus": [KINDS["consensus"]]}


def config_reads(obj, seen: set | None = None) -> set[str]:
    """The JudgeConfig fields that a judge class's module (or a judging helper it calls, such as
    asking.ask_samples) reads: `self.config.x`, `judge.config.x`, `config.x`; `normalize()` reads the scale."""
    seen = set() if seen is None else seen
    seen.add(obj)
    module = inspect.getmodule(obj)
    reads = set()
    for node in ast.walk(ast.parse(inspect.getsource(obj))):
        if isinstance(node, ast.Attribute) and (
            isinstance(node.value, ast.Attribute) and node.value.attr == "config"
            or isinstance(node.value, ast.Name) and node.value.id == "config"
        ):
            reads.add("scale" if node.attr == "normalize" else node.attr)
        helper = getattr(module, node.id, None) if isinstance(node, ast.Name) else None
        if inspect.isfunction(helper) and helper.__module__.startswith("bestofn.judging") and helper not in seen \
                and helper.__module__ != getattr(obj, "__name__", None):
            reads |= config_reads(helper, seen)
    return reads & set(JudgeConfig.model_fields)


@pytest.mark.parametrize("form", sorted(JUDGE_KEYS))
def test_the_key_table_is_what_each_kind_reads(form):
    read = set().union(*(config_reads(inspect.getmodule(cls)) for cls in CLASSES[form]))
    # every key a judge of this form reads is allowed (none is refused that the code uses) ...
    if form != "per-criterion":  # CompactJudge's normalize() is its total's, not a per-criterion judge's
        assert read <= JUDGE_KEYS[form], f"{form} judges read {sorted(read - JUDGE_KEYS[form])}: not in JUDGE_KEYS"
    # ... and every kind-specific key allowed is read by the judge's class (none is accepted and ignored)
    unread = JUDGE_KEYS[form] - PIPELINE - read
    assert not unread, f"JUDGE_KEYS[{form!r}] allows {sorted(unread)}, which no {form} judge reads"
    assert set(JUDGE_KEYS) - {"per-criterion"} == set(KINDS)


def write(tmp_path: Path, judge: str) -> Path:
    path = tmp_path / "mine.toml"
    path.write_text(f'name = "mine"\n\n[[judge]]\n{judge}\n', encoding="utf-8")
    return path


@pytest.mark.parametrize("judge, key", [
    ('name = "pref"\nkind = "pairwise"\nrubric = "pairwise.v1"\nsamples = 3', "samples"),
    ('name = "pref"\nkind = "pairwise"\nrubric = "pairwise.v1"\nneeds_reference = true', "needs_reference"),
    ('name = "pref"\nkind = "pairwise"\nrubric = "pairwise.v1"\ngate = true', "gate"),
    ('name = "rank"\nkind = "listwise"\nrubric = "listwise.v1"\nscore_method = "logprob"', "score_method"),
    ('name = "rank"\nkind = "listwise"\nrubric = "listwise.v1"\nmode = "knockout"', "mode"),
    ('name = "ifeval"\nkind = "verifier"\nsamples = 2', "samples"),
    ('name = "ifeval"\nkind = "verifier"\nrubric = "correctness.v1"', "rubric"),
    ('name = "correctness"\nrubric = "correctness.v1"\nshuffles = 3', "shuffles"),
    ('name = "aspects"\nrubric = "compact.v1"\nper_criterion = true\nweight = 2.0\n'
     'criteria = [{ name = "a", scale = [0, 5] }]', "weight"),
])
def test_a_key_the_kind_does_not_read_is_an_error_naming_file_judge_and_key(tmp_path, judge, key):
    path = write(tmp_path, judge)
    name = judge.split('"')[1]
    with pytest.raises(ConfigError) as info:
        load_panel(path)
    message = str(info.value)
    assert message.startswith(f"panel file {path}: judge {name!r}: {key!r}: ") and "do not read it" in message
    assert "\n" not in message


def test_kind_scorer_is_refused_until_a_scorer_judge_exists(tmp_path):
    path = write(tmp_path, 'name = "reward"\nkind = "scorer"\nmodel = "local"')
    with pytest.raises(ConfigError, match=rf"^panel file {path}: judge 'reward': kind 'scorer' is not supported yet"):
        load_panel(path)


def test_the_keys_each_kind_reads_are_accepted_and_every_shipped_panel_loads():
    for path in [*ROOT.glob("judges/*.toml"), *ROOT.glob("tests/panels/*.toml"), *ROOT.glob("tests/ab_panels/*.toml")]:
        panel = load_panel(path)
        assert len(build_judges(panel, lambda config: FakeBackend())) == len(panel.judges), path
    pairwise = JudgeConfig(name="p", kind="pairwise", rubric="pairwise.v1", mode="knockout", weight=2.0,
                           model="local", temperature=0.5, max_tokens=64, examples=[{"answer": "x", "verdict": "A"}])
    listwise = JudgeConfig(name="l", kind="listwise", rubric="listwise.v1", shuffles=3, window=4, step=2, passes=2)
    verifier = JudgeConfig(name="v", kind="verifier", check="ifeval", gate=True, gate_pass=0.5, weight=1.0)
    assert (pairwise.mode, listwise.window, verifier.check) == ("knockout", 4, "ifeval")
