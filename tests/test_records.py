import pytest
from pydantic import ValidationError

from bestofn.records import (
    Candidate, Cost, Message, PreferencePair, Selection, Verdict, as_messages, text_id,
)


def _selection() -> Selection:
    c = Candidate(id=text_id("hi"), index=0, text="hi", finish_reason="stop", model="local")
    v = Verdict(judge="safety", kind="rubric", candidate_ids=[c.id], status="ok", score=9, normalized=0.889)
    p = PreferencePair(
        id="x", prompt=[Message(role="user", content="q")], chosen=[Message(role="assistant", content="a")],
        rejected=[Message(role="assistant", content="b")], score_chosen=0.9, score_rejected=0.1, margin=0.8,
        strategy="best-worst", judges=["safety"], template_sha256={"safety": "abc"}, generator="local",
        panel="default", seed=0, chosen_id="1", rejected_id="2",
    )
    return Selection(prompt=[Message(role="user", content="q")], panel="default", candidates=[c], verdicts=[v],
                     scores={c.id: 0.889}, ranking=[c.id], best=c, pairs=[p], cost=Cost(calls=2))


def test_selection_json_round_trip():
    s = _selection()
    assert Selection.model_validate_json(s.model_dump_json()) == s


def test_records_are_frozen():
    s = _selection()
    with pytest.raises(ValidationError):
        s.best.text = "changed"  # type: ignore[misc]


def test_identical_texts_share_an_id_and_different_texts_do_not():
    assert text_id("same") == text_id("same")
    assert text_id("same") != text_id("same ")


def test_as_messages_accepts_strings_and_dicts_and_rejects_empty():
    assert as_messages("hi") == [Message(role="user", content="hi")]
    assert as_messages([{"role": "user", "content": "x"}])[0].content == "x"
    with pytest.raises(ValueError, match="no messages"):
        as_messages([])
    with pytest.raises(ValueError, match="non-empty user message"):
        as_messages("   ")
    with pytest.raises(ValidationError):
        as_messages([{"role": "wizard", "content": "x"}])
