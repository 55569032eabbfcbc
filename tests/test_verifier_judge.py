"""The verifier judge (kind "verifier"): verdicts, abstentions, errors, panels, and the select() pipeline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import bestofn
from bestofn.ranking.aggregate import aggregate
from bestofn.errors import ConfigError
from bestofn.judging import KINDS, JudgeInput, build_judges
from bestofn.judging.verifier import VerifierJudge
from bestofn.config.panel import JudgeConfig, Panel, load_panel
from bestofn.records import Candidate, Message, text_id
from bestofn.pipeline.select import judge_all

PANEL = Path(__file__).parent / "panels" / "verifiers.toml"
GSM8K_COLUMNS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")


def candidates(texts: list[str]) -> list[Candidate]:
    """Candidates as the generator makes them: content-hash ids, later copies marked as duplicates."""
    first: dict[str, int] = {}
    out = []
    for i, text in enumerate(texts):
        cid = text_id(text)
        out.append(Candidate(id=cid, index=i, text=text, model="given", duplicate_of=first.get(cid)))
        first.setdefault(cid, i)
    return out


def judge(check: str | None = None, name: str = "v") -> VerifierJudge:
    return VerifierJudge(config=JudgeConfig(name=name, kind="verifier", check=check))


def item(**constraints) -> JudgeInput:
    return JudgeInput(prompt=[Message(role="user", content="q")], constraints=constraints)


IFEVAL = {
    "instruction_id_list": ["punctuation:no_comma", "detectable_format:title", "keywords:existence"],
    "kwargs": [{}, {}, {"keywords": ["owl"]}],
}


async def test_ifeval_verdict_fields():
    c = candidates(["<<Night>>\nThe cat sleeps, the dog barks."])
    [v] = await judge("ifeval").judge(item(**IFEVAL), c)
    assert v.kind == "verifier" and v.status == "ok" and v.judge == "v" and v.candidate_ids == [c[0].id]
    assert v.score == pytest.approx(1 / 3) and v.normalized == v.score
    assert v.criteria == {"punctuation:no_comma": 0.0, "detectable_format:title": 1.0, "keywords:existence": 0.0}
    assert "punctuation:no_comma" in v.reasoning and "keywords:existence" in v.reasoning
    assert "detectable_format:title" not in v.reasoning
    assert v.template_sha256 is None and v.model is None and v.reason is None
    [good] = await judge("ifeval").judge(item(**IFEVAL), candidates(["<<Night>>\nThe owl hoots."]))
    assert good.score == 1.0 and good.reasoning.startswith("3/3")


async def test_auto_mode_runs_every_applicable_check():
    [v] = await judge().judge(item(answer="12", regex=r"^Total"), candidates(["Total: 12"]))
    assert v.status == "ok" and v.criteria == {"exact_numeric": 1.0, "regex": 1.0} and v.score == 1.0
    assert v.details["checks"] == ["exact_numeric", "regex"] and v.details["found"] == "12"
    [w] = await judge().judge(item(answer="12", regex=r"^Total"), candidates(["Sum: 13"]))
    assert w.score == 0.0 and w.criteria == {"exact_numeric": 0.0, "regex": 0.0}


async def test_nothing_to_check_abstains():
    [v] = await judge().judge(item(), candidates(["anything"]))
    assert v.status == "abstain" and v.score is None and v.normalized is None and "nothing to check" in v.reason
    [w] = await judge("json_schema").judge(item(regex="x"), candidates(["x"]))
    assert w.status == "abstain" and "json_schema" in w.reason and "regex" in w.reason


async def test_named_numeric_check_uses_the_reference_answer():
    ji = JudgeInput(prompt=[Message(role="user", content="q")], reference="2 + 2 = 4\n#### 4")
    [v] = await judge("exact_numeric").judge(ji, candidates(["The answer is 4."]))
    assert v.status == "ok" and v.score == 1.0
    [w] = await judge().judge(ji, candidates(["The answer is 4."]))  # auto mode never guesses from a reference
    assert w.status == "abstain"


@pytest.mark.parametrize(
    "constraints,reason",
    [
        ({"regex": "("}, "bad pattern"),
        ({"instruction_id_list": ["no:such"], "kwargs": [{}]}, "unknown IFEval instruction id 'no:such'"),
        ({"answer": "n/a"}, "no number in the reference"),
    ],
)
async def test_malformed_constraints_give_an_error_verdict(constraints, reason):
    [v] = await judge().judge(item(**constraints), candidates(["text 1"]))
    assert v.status == "error" and reason in v.reason and v.score is None


def test_kind_is_registered_and_needs_no_model():
    assert KINDS["verifier"] is VerifierJudge
    assert VerifierJudge.pointwise and not VerifierJudge.needs_model
    panel = load_panel(PANEL)
    asked = []
    [j] = build_judges(panel, lambda config: asked.append(config) or None)
    assert isinstance(j, VerifierJudge) and j.backend is None and asked == []


def test_unknown_check_fails_when_the_panel_is_built():
    panel = Panel.model_validate({"name": "p", "judge": [{"name": "v", "kind": "verifier", "check": "bogus"}]})
    with pytest.raises(ConfigError, match="unknown verifier check 'bogus'"):
        build_judges(panel, lambda config: None)


async def test_gsm8k_example_solutions_the_verifier_picks_a_correct_candidate(data_dir):
    """Four labelled model solutions per GSM8K test question; the labels are stripped before judging and only
    used afterwards to check the pick."""
    answers = {}
    for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines():
        row = json.loads(line)
        answers[row["question"]] = row["answer"]
    panel = load_panel(PANEL)
    judges = build_judges(panel, lambda config: None)
    solutions = (data_dir / "gsm8k" / "example_model_solutions.jsonl").read_text()
    rows = [json.loads(line) for line in solutions.splitlines()]
    assert len(rows) == 1319
    solvable = picked_correct = agree = total = 0
    for row in rows:
        texts = [row[col]["solution"] for col in GSM8K_COLUMNS]  # text only: no label reaches the judge
        cands = candidates(texts)
        ji = JudgeInput(prompt=[Message(role="user", content=row["question"])],
                        constraints={"answer": answers[row["question"]]})
        verdicts = await judge_all(judges, ji, cands)
        assert all(v.kind == "verifier" and v.status == "ok" for v in verdicts)
        result = aggregate(panel, [c.id for c in cands if c.duplicate_of is None], verdicts)
        labels = {c.id: row[col]["is_correct"] for c, col in zip(cands, GSM8K_COLUMNS)}
        by_id = {v.candidate_ids[0]: v.score for v in verdicts}
        for cid, label in labels.items():
            total += 1
            agree += (by_id[cid] == 1.0) == label
        if any(labels.values()):
            solvable += 1
            picked_correct += labels[result.ranking[0]]
    assert solvable > 742  # the 175b_verification column alone is right on 742 (56.3 %)
    assert picked_correct == solvable, f"picked a correct candidate on {picked_correct}/{solvable}"
    assert agree == total, f"verifier agrees with the labels on {agree}/{total} candidates"


def test_select_with_a_verifier_panel_on_the_local_model():
    """The whole pipeline: the real model samples, the verifier judges (no model call), the best passes."""
    sel = bestofn.select(
        "Is the sky blue? Answer yes or no.",
        panel=str(PANEL),
        n=4,
        max_tokens=8,
        seed=3,
        constraints={"regex": r"(?i)\byes\b"},
    )
    unique = [c for c in sel.candidates if c.duplicate_of is None]
    assert len(sel.candidates) == 4
    assert {v.kind for v in sel.verdicts} == {"verifier"} and len(sel.verdicts) == len(unique)
    assert all(v.status == "ok" and v.criteria is not None and set(v.criteria) == {"regex"} for v in sel.verdicts)
    assert sel.cost.calls == 4  # the four samples; the verifier calls no model
    scores = {v.candidate_ids[0]: v.score for v in sel.verdicts}
    assert sel.best is not None and scores[sel.best.id] == max(scores.values())
    assert set(sel.ranking) == {c.id for c in unique}
    for c in unique:  # the verdicts are right about the sampled texts
        assert scores[c.id] == (1.0 if __import__("re").search(r"(?i)\byes\b", c.text) else 0.0)

    nothing = bestofn.select("Is the sky blue? Answer yes or no.", panel=str(PANEL), n=2, max_tokens=8, seed=3)
    assert {v.status for v in nothing.verdicts} == {"abstain"}
    assert nothing.best is None and nothing.ranking == []  # nothing verified, nothing ranked: no guess
