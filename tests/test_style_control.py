"""Style control in Bradley-Terry: length and markdown counts as covariates, so a judge's taste for long or
formatted answers does not decide the pick."""

from __future__ import annotations

import itertools

import pytest

from bestofn.config.panel import Panel
from bestofn.ranking.aggregate import aggregate
from bestofn.ranking.comparisons import Comparison, bradley_terry, style_features, style_taste
from bestofn.records import Verdict

IDS = [f"c{i}" for i in range(6)]
WORDS = dict(zip(IDS, [10, 20, 40, 80, 160, 320]))
TEXTS = {c: " ".join("w" + "".join(chr(97 + int(d)) for d in str(k)) for k in range(n))  # distinct words
         for c, n in WORDS.items()}


def outcome(a: str, b: str) -> float:
    """A judge that prefers the longer answer, except that c2 beats c3 and c4, both longer."""
    if {a, b} in ({"c2", "c3"}, {"c2", "c4"}):
        return 1.0 if a == "c2" else 0.0
    return 1.0 if WORDS[a] > WORDS[b] else 0.0


COMPARISONS = [Comparison(a, b, outcome(a, b), judge="pref") for a, b in itertools.combinations(IDS, 2)]


def best(fit) -> str:
    return max(fit.expected, key=fit.expected.get)


@pytest.mark.parametrize("ties", ["half", "davidson"])
def test_the_longest_answer_wins_without_style_control_and_not_with_it(ties):
    plain = bradley_terry(COMPARISONS, IDS, ties=ties)
    styled = bradley_terry(COMPARISONS, IDS, ties=ties, style={c: style_features(t) for c, t in TEXTS.items()})
    assert best(plain) == "c5" and best(styled) == "c2"  # the one that beat longer answers
    style = styled.extra["style"]
    assert style["coefficients"]["length"] > 1 and style["constant"] == ["headers", "bold", "list_items"]
    assert plain.extra == {}


def test_the_aggregate_fits_with_style_control_and_reports_the_coefficients():
    verdicts = [Verdict(judge="pref", kind="pairwise", candidate_ids=[c.a, c.b], status="ok", score=c.outcome,
                        normalized=c.outcome) for c in COMPARISONS]
    data = {"name": "p", "aggregate": "bradley_terry",
            "judge": [{"name": "pref", "kind": "pairwise", "rubric": "pairwise.v1"}]}
    plain = aggregate(Panel.model_validate(data), IDS, verdicts, texts=TEXTS)
    styled = aggregate(Panel.model_validate({**data, "style_control": True}), IDS, verdicts, texts=TEXTS)
    assert plain.ranking[0] == "c5" and styled.ranking[0] == "c2"
    coefficients = styled.stats["bradley_terry"]["style_control"]["coefficients"]
    assert coefficients["length"] > 1 and "style_control" not in plain.stats["bradley_terry"]
    untexted = aggregate(Panel.model_validate({**data, "style_control": True}), IDS, verdicts)
    assert untexted.stats["bradley_terry"]["style_control"] == "no candidate texts: not applied"


def test_style_features_count_length_headers_bold_and_list_items():
    text = "# Title\n\nSome **bold** and __more__ text.\n\n## Steps\n1. one\n2) two\n- three\n  * four\n#not a header\n"
    assert style_features(text) == {"length": 20.0, "headers": 2.0, "bold": 2.0, "list_items": 4.0}
    assert style_features("") == {"length": 0.0, "headers": 0.0, "bold": 0.0, "list_items": 0.0}


def test_style_control_is_read_by_bradley_terry_only():
    with pytest.raises(ValueError, match='style_control is read by aggregate = "bradley_terry" only'):
        Panel.model_validate({"name": "p", "style_control": True,
                              "judge": [{"name": "correctness", "rubric": "correctness.v1"}]})


def test_the_style_taste_of_a_judge_is_what_its_decisions_owe_to_style_beyond_the_gold():
    """40 items, the gold label and which answer is longer independent: a judge that follows the gold has no
    taste for length; one that picks the longer answer has nothing but."""
    short, long = style_features("a b"), style_features("a b c d e f g h")
    items = [(1.0 if i % 2 == 0 else -1.0, (i // 2) % 2 == 0) for i in range(40)]  # (gold, a is the longer)
    rows = lambda pick: [(long if a_long else short, short if a_long else long, pick(gold, a_long), gold)  # noqa: E731
                         for gold, a_long in items]
    truthful = style_taste(rows(lambda gold, a_long: float(gold > 0)))
    lengthy = style_taste(rows(lambda gold, a_long: float(a_long)))
    assert truthful["gold_coefficient"] > 3 and abs(truthful["coefficients"]["length"]) < 1e-3
    assert lengthy["coefficients"]["length"] > 3 and abs(lengthy["gold_coefficient"]) < 1e-3
    assert truthful["constant"] == ["headers", "bold", "list_items"] and truthful["items"] == 40
    assert style_taste(rows(lambda gold, a_long: 1.0)[:1]) is None
