"""Exact-match numeric answers: extraction, normalisation, and the real GSM8K and SVAMP files."""

from __future__ import annotations

import json
from fractions import Fraction

import pytest

from bestofn.judging.verifiers import ConstraintError, numeric
from bestofn.judging.verifiers.numeric import extract_answer, to_number


@pytest.mark.parametrize(
    "text,value,how",
    [
        ("She makes 9 * 2 = $<<9*2=18>>18 every day.\n#### 18", 18, "####"),
        ("#### 1,200", 1200, "####"),
        ("so x = 3 and \\boxed{42} is it; later 7", 42, "boxed"),
        ("She sells 2 eggs.\nA: 26", 26, "answer line"),
        ("Work: 5 + 5 = 10\nAnswer: $1,234.50", Fraction(246_900, 200), "answer line"),
        ("Step 1 gives 4. The answer is 12 apples. Check: 12 - 4 = 8", 12, "answer phrase"),
        ("So the final answer is: **-7**.", -7, "answer phrase"),
        ("First 3, then 16-3=13, finally 13.", 13, "last number"),
        ("It costs $18.00 in total.", 18, "last number"),
        ("Three quarters: 3/4", Fraction(3, 4), "last number"),
        ("The ratio is .5", Fraction(1, 2), "last number"),
        ("Items: 2,3,4", 4, "last number"),
    ],
)
def test_extract_answer(text, value, how):
    assert extract_answer(text) == (Fraction(value), how)


def test_extract_nothing():
    assert extract_answer("no digits here") is None
    assert numeric.check("no digits here", {"answer": "5"}).criteria == {"exact_numeric": False}


@pytest.mark.parametrize("a,b", [("1,000", "1000"), ("18.00", "18"), ("0.75", "3/4"), ("-2.50", "-5/2"), ("7.", "7")])
def test_normalisation(a, b):
    assert to_number(a) == to_number(b) is not None


def test_reference_forms():
    assert numeric.reference_answer({"answer": 51.0}) == 51  # SVAMP stores floats
    assert numeric.reference_answer({"answer": 72}) == 72
    assert numeric.reference_answer({"answer": "Janet makes...\n#### 1,018"}) == 1018
    assert numeric.reference_answer({}, reference="A: 5") == 5
    with pytest.raises(ConstraintError, match="no number"):
        numeric.reference_answer({"answer": "unknown"})
    with pytest.raises(ConstraintError, match="must be a number"):
        numeric.reference_answer({"answer": True})


def test_check_reports_what_it_found():
    ok = numeric.check("...\nA: 18", {"answer": "18"})
    assert ok.all_followed and ok.details == {"expected": "18", "found": "18", "found_by": "answer line"}
    bad = numeric.check("The answer is 2.5", {"answer": "3"})
    assert not bad.all_followed and "2.5" in bad.notes[0] and "3" in bad.notes[0]


def _gsm8k_answers(data_dir) -> dict[str, str]:
    rows = [json.loads(line) for line in (data_dir / "gsm8k" / "test.jsonl").read_text().splitlines() if line]
    assert len(rows) == 1319
    return {r["question"]: r["answer"] for r in rows}


def test_gsm8k_references_all_parse_and_verify_their_own_solution(data_dir):
    for question, answer in _gsm8k_answers(data_dir).items():
        expected = numeric.reference_answer({"answer": answer})
        assert answer.rsplit("####", 1)[1].strip().replace(",", "") == numeric.show(expected)
        assert numeric.check(answer, {"answer": answer}).all_followed


def test_svamp_answers(data_dir):
    rows = json.loads((data_dir / "svamp" / "SVAMP.json").read_text())
    assert len(rows) == 1000
    for row in rows:
        value = row["Answer"]
        shown = str(int(value)) if value == int(value) else repr(value)
        text = f"{row['Body']} {row['Question']} The answer is {shown}."
        assert numeric.check(text, {"answer": value}).all_followed, text
        assert not numeric.check(f"The answer is {value + 1!r}.", {"answer": value}).all_followed
