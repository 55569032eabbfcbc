"""The built-in panels: each loads, builds its judges, and runs end to end with `bestofn run --panel NAME` on the
real local model (n=3, short answers); the tests count the calls each judging method makes."""

import json

import pytest
from typer.testing import CliRunner

from bestofn.apps.cli.main import app
from bestofn.judging import KINDS, build_judges
from bestofn.judging.compact import CompactJudge
from bestofn.config.panel import builtin_panels, load_panel
from bestofn.records import Selection
from tests.fake_backend import FakeBackend

NEW = ["compact", "pairwise", "listwise", "verifier-first"]
PROMPT = "Name one primary color. Answer in one word."
N = 3


def test_every_builtin_panel_loads_and_builds():
    assert set(NEW) <= set(builtin_panels())
    assert {"rubric", "pairwise", "listwise", "verifier"} <= set(KINDS)
    for name in builtin_panels():
        panel = load_panel(name)
        judges = build_judges(panel, lambda config: FakeBackend())
        assert len(judges) == len(panel.judges)


def test_compact_and_verifier_first_score_the_default_panels_criteria_with_its_weights():
    default = load_panel("default")
    for name in ("compact", "verifier-first"):
        panel = load_panel(name)
        assert panel.weights() == default.weights() and panel.safety_veto == default.safety_veto
        assert any(isinstance(j, CompactJudge) for j in build_judges(panel, lambda config: FakeBackend()))
    assert list(load_panel("verifier-first").gates()) == ["verify"]


def test_judge_max_tokens_precedence_is_flag_then_toml_then_default():
    """DESIGN.md: command-line flag > the panel's TOML > the default (384)."""
    default = load_panel("default")
    judges = list(default.judges)
    judges[0] = judges[0].model_copy(update={"max_tokens": 100})
    panel = default.model_copy(update={"judges": judges})

    def limits(flag):
        return [j.max_tokens for j in build_judges(panel, lambda config: FakeBackend(), max_tokens=flag)]

    assert limits(None) == [100, 384, 384, 384]  # the TOML's where it sets one, else the default
    assert limits(64) == [64, 64, 64, 64]  # the flag wins over the TOML


def judge_calls(selection: Selection) -> int:
    """The model calls the verdicts account for (re-asks included), counted once per call."""
    calls = 0
    kinds = {v.kind for v in selection.verdicts}
    if "listwise" in kinds:
        calls += next(v.details["calls"] for v in selection.verdicts if v.kind == "listwise")
    calls += sum(v.attempts for v in selection.verdicts if v.kind == "pairwise")
    first_per_candidate = {}
    for v in selection.verdicts:
        if v.kind == "rubric":
            first_per_candidate.setdefault(v.candidate_ids[0], v.attempts)
    return calls + sum(first_per_candidate.values())


@pytest.mark.parametrize("name", NEW)
def test_builtin_panel_runs_end_to_end_on_the_local_model(name, local_backend):
    result = CliRunner().invoke(app, ["run", PROMPT, "--panel", name, "-n", str(N), "--max-tokens", "16",
                                      "--judge-max-tokens", "160", "--seed", "1", "--json"])
    assert result.exit_code == 0, result.output
    selection = Selection.model_validate(json.loads(result.stdout))
    unique = [c for c in selection.candidates if c.duplicate_of is None]
    k = len(unique)
    kinds = {v.kind for v in selection.verdicts}
    panel = load_panel(name)
    assert selection.panel == name and selection.best is not None and selection.ranking
    # every verdict records its judge's kind, and the calls are what the method promises
    if name == "compact":
        assert kinds == {"rubric"}
        assert {v.judge for v in selection.verdicts} == set(panel.weights())
        assert judge_calls(selection) >= k and len(selection.verdicts) == 4 * k
    elif name == "pairwise":
        assert kinds == {"pairwise"} and len(selection.verdicts) == k * (k - 1) // 2
        assert judge_calls(selection) >= k * (k - 1)
        assert "preference" in selection.stats["bias"]["position_consistency"]
        assert "bradley_terry" in selection.stats
    elif name == "listwise":
        assert kinds == {"listwise"} and len(selection.verdicts) == k
        assert judge_calls(selection) >= panel.judges[0].shuffles  # one per shuffle (k <= window)
        assert "shuffle_agreement" in selection.stats["bias"]
    else:
        assert kinds == {"verifier", "rubric"}
        verify = [v for v in selection.verdicts if v.kind == "verifier"]
        assert len(verify) == k and {v.status for v in verify} == {"abstain"}  # no constraints: nothing to check
        assert selection.stats["gate"]["passed"] == [c.id for c in unique]
    assert selection.cost.calls == N + judge_calls(selection)


async def test_verifier_first_gates_on_a_real_ifeval_row_and_rubrics_order_the_survivors(data_dir):
    """The panel's verifier checks the IFEval constraints that came with the prompt; the candidate that breaks
    them ranks last even with the best rubric scores (the compact judge here is scripted: this is about the gate)."""
    from bestofn.ranking.aggregate import aggregate
    from bestofn.judging import JudgeInput
    from bestofn.records import Candidate, Message, text_id
    from tests.oracle_backend import OracleBackend

    row = next(r for r in map(json.loads, (data_dir / "ifeval" / "input_data.jsonl").open())
               if r["instruction_id_list"] == ["punctuation:no_comma"])
    texts = {"Day one: Tokyo, then Kyoto, then Osaka, my lord.": 9,  # commas: breaks the rule, best rubric scores
             "Day one brings thee to Tokyo and its fair towers.": 5,
             "Hark the journey starts in Kyoto where temples stand.": 7}
    oracle = OracleBackend(texts)
    panel = load_panel("verifier-first")
    judges = build_judges(panel, lambda config: oracle)
    item = JudgeInput(prompt=[Message(role="user", content=row["prompt"])], seed=0,
                      constraints={"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]})
    cands = [Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)]
    verdicts = [v for j in judges for c in cands for v in await j.judge(item, [c])]
    gate = {v.candidate_ids[0]: v for v in verdicts if v.kind == "verifier"}
    assert [gate[c.id].normalized for c in cands] == [0.0, 1.0, 1.0]
    result = aggregate(panel, [c.id for c in cands], verdicts)
    assert result.ranking == [cands[2].id, cands[1].id, cands[0].id]
    assert result.stats["gate"]["failed"] == [cands[0].id] and oracle.calls == 3
