"""The consensus judge (self-consistency) and the `majority_of_best` aggregate."""

from __future__ import annotations

import pytest

from bestofn.config.panel import Panel, load_panel
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.judging.verifiers.numeric import extract_answer, show
from bestofn.pipeline.generate import mark_duplicates
from bestofn.pipeline.schedule import judge_all
from bestofn.ranking.aggregate import aggregate
from bestofn.records import Candidate, Message, Verdict, text_id

ITEM = JudgeInput(prompt=[Message(role="user", content="What is 80 plus 29?")], seed=0)


def samples(*texts: str) -> list[Candidate]:
    return mark_duplicates([Candidate(id=text_id(t), index=i, text=t, model="test") for i, t in enumerate(texts)])


def consensus_judge(**keys):
    panel = Panel.model_validate({"name": "c", "judge": [{"name": "consensus", "kind": "consensus", **keys}]})
    (judge,) = build_judges(panel, lambda config: None)
    return panel, judge


async def test_a_candidate_scores_the_share_of_the_other_samples_that_agree_duplicates_included():
    panel, judge = consensus_judge()
    cands = samples("80 + 29 = 109", "80 + 29 = 109", "Answer: 109.00", "It is 118.", "I cannot say.")
    verdicts = {v.candidate_ids[0]: v for v in await judge_all([judge], ITEM, cands)}  # the pipeline's own path
    twice, once, other, none = (verdicts[c.id] for c in cands if c.duplicate_of is None)
    assert len(verdicts) == 4 and {v.kind for v in verdicts.values()} == {"consensus"}
    assert (twice.score, once.score, other.score) == (0.5, 0.5, 0.0)  # 2 of the 4 others say 109; none 118
    assert twice.details == {"answer": "109", "found_by": "last number", "copies": 2, "agree": 2, "others": 4}
    assert once.details["found_by"] == "answer line" and once.normalized == once.score
    assert none.status == "abstain" and none.score is None and none.reason == "no final answer: no number found"
    result = aggregate(panel, [c.id for c in cands if c.duplicate_of is None], list(verdicts.values()))
    assert set(result.ranking[:2]) == {twice.candidate_ids[0], once.candidate_ids[0]}
    assert none.candidate_ids[0] in result.unrankable


async def test_an_answer_regex_reads_the_answer_instead():
    _, judge = consensus_judge(answer_regex=r"(?i)final:\s*(\w+)")
    cands = samples("final: Paris", "FINAL: paris (I think)", "final: Lyon, not final: Rome", "Paris!")
    verdicts = await judge.judge(ITEM, cands)
    assert [v.score for v in verdicts[:3]] == [pytest.approx(1 / 3), pytest.approx(1 / 3), 0.0]
    assert verdicts[2].details["answer"] == "Rome"  # the last match
    assert verdicts[3].status == "abstain" and "matched nothing" in verdicts[3].reason


async def test_the_only_sample_abstains_and_is_still_ranked():
    panel, judge = consensus_judge()
    (only,) = samples("109")
    (verdict,) = await judge.judge(ITEM, [only])
    assert verdict.status == "abstain" and verdict.details["answer"] == "109"
    assert aggregate(panel, [only.id], [verdict]).ranking == [only.id]


def test_the_consensus_panel_loads_and_its_regex_is_checked(tmp_path):
    panel = load_panel("consensus")
    assert [(j.kind, j.answer_regex) for j in panel.judges] == [("consensus", None)]
    path = tmp_path / "bad.toml"
    path.write_text('name = "bad"\n[[judge]]\nname = "c"\nkind = "consensus"\nanswer_regex = "(unclosed"\n')
    with pytest.raises(ConfigError, match=r"judge 'c': answer_regex '\(unclosed' is not a regex"):
        load_panel(path)


def majority_panel(top_k: int) -> Panel:
    return Panel.model_validate({"name": "m", "aggregate": "majority_of_best", "top_k": top_k, "judge": [
        {"name": "correctness", "rubric": "correctness.v1"}, {"name": "consensus", "kind": "consensus"}]})


def test_majority_of_best_lets_the_rubrics_top_k_vote():
    """Five samples, the rubric's order c0 > ... > c4; answers 7, 5, 5, 7, 7. Over all five, 7 wins; among the
    rubric's top 3, 5 does: its two candidates lead (by rubric), then the 7s (one vote of three), by rubric."""
    ids = [f"c{i}" for i in range(5)]
    answers = ["7", "5", "5", "7", "7"]
    verdicts = []
    for i, (cid, answer) in enumerate(zip(ids, answers)):
        verdicts.append(Verdict(judge="correctness", kind="rubric", candidate_ids=[cid], status="ok",
                                score=10 - i, normalized=(9 - i) / 9))
        verdicts.append(Verdict(judge="consensus", kind="consensus", candidate_ids=[cid], status="ok", score=0.5,
                                normalized=0.5, details={"answer": answer, "copies": 1}))
    result = aggregate(majority_panel(3), ids, verdicts)
    assert result.ranking == ["c1", "c2", "c0", "c3", "c4"]
    assert result.stats["majority_of_best"] == {"top_k": ["c0", "c1", "c2"], "votes": {"7": 1, "5": 2}, "winner": "5"}
    assert result.scores["c1"] == pytest.approx(2 / 3) and result.scores["c3"] == pytest.approx(1 / 3)
    assert aggregate(majority_panel(5), ids, verdicts).ranking[0] == "c0"  # all five vote: 7, the best 7 first


@pytest.mark.parametrize("keys, message", [
    ({"aggregate": "majority_of_best"}, "needs top_k"),
    ({"top_k": 3}, "top_k is read by it only"),
    ({"aggregate": "majority_of_best", "top_k": 3, "judge": [{"name": "correctness", "rubric": "correctness.v1"}]},
     "needs one consensus judge and at least one other scoring judge"),
])
def test_majority_of_best_needs_top_k_a_consensus_judge_and_a_rubric(keys, message):
    data = {"name": "m", "judge": [{"name": "correctness", "rubric": "correctness.v1"},
                                   {"name": "consensus", "kind": "consensus"}], **keys}
    with pytest.raises(ValueError, match=message):
        Panel.model_validate(data)


async def test_the_consensus_panel_with_the_embedded_generator(local_backend):
    """The real pipeline: the local model samples, duplicates included go to the judge, every verdict's answer is
    the numeric extractor's, and the best candidate holds the most common answer."""
    from bestofn.pipeline.select import aselect

    selection = await aselect("What is 2 plus 2? Answer with the number.", n=4, model=local_backend,
                              panel="consensus", max_tokens=24, cache=False)
    texts = {c.id: c.text for c in selection.candidates}
    answered = [v for v in selection.verdicts if v.details.get("answer") is not None]
    for v in answered:
        assert v.details["answer"] == show(extract_answer(texts[v.candidate_ids[0]])[0])
    assert len(selection.verdicts) == len(texts)  # one verdict per distinct text ...
    assert sum(v.details["copies"] for v in answered) == sum(  # ... counting every sample that has an answer
        extract_answer(c.text) is not None for c in selection.candidates)
    if answered and any(v.status == "ok" for v in answered):
        best = next(v for v in answered if v.candidate_ids == [selection.best.id])
        assert best.score == max(v.score for v in answered if v.status == "ok")
