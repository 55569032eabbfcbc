"""IFEval checks: every instruction id found in IFEval's input_data.jsonl has pass and fail cases here."""

from __future__ import annotations

import json

import pytest

from bestofn.judging.verifiers import ConstraintError
from bestofn.judging.verifiers.ifeval import RULES, evaluate, loose_variants
from bestofn.judging.verifiers.text import count_capital_words, count_sentences, count_words, detect_language

LONG_EN = (
    "The quick brown fox jumps over the lazy dog near the river bank. "
    "Every morning the farmer walks to the market to sell fresh vegetables and eggs."
)

# instruction id -> [(kwargs, response, followed?)]; each id needs at least one True and one False case.
CASES: dict[str, list[tuple[dict, str, bool]]] = {
    "punctuation:no_comma": [
        ({}, "No commas here at all.", True),
        ({}, "One, two.", False),
    ],
    "keywords:existence": [
        ({"keywords": ["adoption", "carriage"]}, "The Carriage waited while the adoption papers were signed.", True),
        ({"keywords": ["adoption", "carriage"]}, "The carriage waited.", False),
    ],
    "keywords:forbidden_words": [
        ({"forbidden_words": ["bark", "run"]}, "Dogs running is fine: 'running' is not the word run... wait", False),
        ({"forbidden_words": ["bark", "run"]}, "The dog barked and was running.", True),  # whole words only
        ({"forbidden_words": ["die"]}, "They will DIE.", False),
    ],
    "keywords:frequency": [
        ({"keyword": "war", "frequency": 2, "relation": "at least"}, "War is war.", True),
        ({"keyword": "war", "frequency": 2, "relation": "at least"}, "Peace.", False),
        ({"keyword": "war", "frequency": 2, "relation": "less than"}, "war, war, war", False),
        ({"keyword": "war", "frequency": 2, "relation": "less than"}, "one war", True),
    ],
    "keywords:letter_frequency": [
        ({"letter": "q", "let_frequency": 3, "let_relation": "at least"}, "Quick quiet quails", True),
        ({"letter": "q", "let_frequency": 3, "let_relation": "at least"}, "quick", False),
        ({"letter": "e", "let_frequency": 1, "let_relation": "less than"}, "I am a cat", True),
        ({"letter": "e", "let_frequency": 1, "let_relation": "less than"}, "I am a cat, yes", False),
        ({"letter": "!", "let_frequency": 2, "let_relation": "at least"}, "Wow! Great!", True),
    ],
    "language:response_language": [
        ({"language": "de"}, "Das ist ein kurzer deutscher Text über das Wetter und die Berge in Bayern.", True),
        ({"language": "de"}, LONG_EN, False),
        ({"language": "ru"}, "Это короткий текст на русском языке о погоде.", True),
    ],
    "change_case:english_lowercase": [
        ({}, LONG_EN.lower(), True),
        ({}, LONG_EN, False),
        ({}, "ceci est un texte entièrement en minuscules écrit en français pour le test du détecteur.", False),
    ],
    "change_case:english_capital": [
        ({}, LONG_EN.upper(), True),
        ({}, LONG_EN, False),
    ],
    "change_case:capital_word_frequency": [
        ({"capital_frequency": 3, "capital_relation": "at least"}, "THIS is VERY WELL-KNOWN", True),
        ({"capital_frequency": 3, "capital_relation": "at least"}, "THIS is WELL-KNOWN", False),  # hyphenated: one
        ({"capital_frequency": 2, "capital_relation": "less than"}, "Only ONE shouted word.", True),
        ({"capital_frequency": 2, "capital_relation": "less than"}, "I DON'T know", False),  # I, DO, N'T
    ],
    "length_constraints:number_words": [
        ({"num_words": 5, "relation": "at least"}, "one two three four five", True),
        ({"num_words": 5, "relation": "at least"}, "one two three four", False),
        ({"num_words": 5, "relation": "less than"}, "one two three four five", False),
        ({"num_words": 5, "relation": "less than"}, "it's short", True),  # it, s, short
    ],
    "length_constraints:number_sentences": [
        ({"num_sentences": 2, "relation": "at least"}, "Dr. Smith went home. He was tired.", True),
        ({"num_sentences": 2, "relation": "less than"}, "Dr. Smith went home. He was tired.", False),
        ({"num_sentences": 2, "relation": "less than"}, "Mr. Jones paid $3.50 for it.", True),
        ({"num_sentences": 3, "relation": "at least"}, "One. Two!", False),
    ],
    "length_constraints:number_paragraphs": [
        ({"num_paragraphs": 3}, "First part.\n***\nSecond part.\n***\nThird part.", True),
        ({"num_paragraphs": 3}, "***\nFirst part.\n***\nSecond part.\n***\nThird part.\n***", True),  # ends are ok
        ({"num_paragraphs": 3}, "First part.\n***\n***\nThird part.", False),  # empty one in the middle
        ({"num_paragraphs": 3}, "First part.\n\nSecond part.\n\nThird part.", False),  # blank lines don't count
    ],
    "length_constraints:nth_paragraph_first_word": [
        ({"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
         "Intro here.\n\n\"Summary, it works.\n\nEnd.", True),
        ({"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"},
         "Intro here.\n\nOverall it works.\n\nEnd.", False),
        ({"num_paragraphs": 3, "nth_paragraph": 2, "first_word": "summary"}, "Intro here.\n\nSummary, done.", False),
    ],
    "detectable_content:number_placeholders": [
        ({"num_placeholders": 2}, "Dear [name], we meet at [address].", True),
        ({"num_placeholders": 2}, "Dear [name], we meet at the office.", False),
    ],
    "detectable_content:postscript": [
        ({"postscript_marker": "P.S."}, "Hello.\n\nP.S. See you soon.", True),
        ({"postscript_marker": "P.S."}, "Hello. See you soon.", False),
        ({"postscript_marker": "P.P.S"}, "Hi.\nP.S. one\nP.P.S two", True),
        ({"postscript_marker": "P.P.S"}, "Hi.\nP.S. one", False),
    ],
    "detectable_format:number_bullet_lists": [
        ({"num_bullets": 2}, "Intro:\n* first\n- second", True),
        ({"num_bullets": 2}, "Intro:\n* first\n* second\n* third", False),  # exactly n
        ({"num_bullets": 2}, "**bold** line\n* only one", False),
    ],
    "detectable_format:constrained_response": [
        ({}, "I thought about it. My answer is maybe.", True),
        ({}, "Maybe.", False),
    ],
    "detectable_format:number_highlighted_sections": [
        ({"num_highlights": 2}, "*part one* and *part two*", True),
        ({"num_highlights": 2}, "*part one* and ** ** nothing", False),
        ({"num_highlights": 2}, "**bold** and *italic*", True),
        ({"num_highlights": 2}, "**bold** only", False),  # a double highlight counts once
    ],
    "detectable_format:multiple_sections": [
        ({"section_spliter": "SECTION", "num_sections": 2}, "SECTION 1\nIntro\nSECTION 2\nBody", True),
        ({"section_spliter": "SECTION", "num_sections": 2}, "SECTION 1\nIntro and body", False),
        ({"section_spliter": "Day", "num_sections": 2}, "Day 1: rest. Day 2: walk.", True),
    ],
    "detectable_format:json_format": [
        ({}, '```json\n{"a": 1}\n```', True),
        ({}, '{"a": [1, 2]}', True),
        ({}, 'Here it is: {"a": 1}', False),
    ],
    "detectable_format:title": [
        ({}, "<<My Title>>\nBody text.", True),
        ({}, "<< >>\nBody text.", False),
        ({}, "My Title\nBody text.", False),
    ],
    "combination:two_responses": [
        ({}, "First answer.\n******\nSecond answer.", True),
        ({}, "Same.\n******\nSame.", False),
        ({}, "One.\n******\n\n******\nTwo.", False),
    ],
    "combination:repeat_prompt": [
        ({"prompt_to_repeat": "Write a poem about cats."}, "write a poem about cats. Cats purr softly.", True),
        ({"prompt_to_repeat": "Write a poem about cats."}, "Here is a poem about cats.", False),
    ],
    "startend:end_checker": [
        ({"end_phrase": "Is there anything else I can help with?"},
         "Done.\nIs there anything else I can help with?\"", True),
        ({"end_phrase": "Is there anything else I can help with?"},
         "Is there anything else I can help with? Bye.", False),
    ],
    "startend:quotation": [
        ({}, '  "Wrapped in double quotes."  ', True),
        ({}, "'Single quotes.'", False),
        ({}, '"', False),
    ],
}


def _ids_in_data(data_dir) -> set[str]:
    rows = [json.loads(line) for line in (data_dir / "ifeval" / "input_data.jsonl").read_text().splitlines() if line]
    return {iid for row in rows for iid in row["instruction_id_list"]}


def test_every_instruction_id_in_the_data_has_pass_and_fail_cases(data_dir):
    ids = _ids_in_data(data_dir)
    assert len(ids) == 25
    missing_rule = sorted(ids - set(RULES))
    assert not missing_rule, f"no verifier for {missing_rule}"
    uncovered = sorted(
        iid for iid in ids
        if not {True, False} <= {expected for _, _, expected in CASES.get(iid, [])}
    )
    assert not uncovered, f"instruction ids without both a pass and a fail case: {uncovered}"


@pytest.mark.parametrize(
    "iid,kwargs,text,expected",
    [(iid, kw, text, exp) for iid, cases in CASES.items() for kw, text, exp in cases],
    ids=[f"{iid}-{i}" for iid, cases in CASES.items() for i in range(len(cases))],
)
def test_instruction(iid, kwargs, text, expected):
    result = evaluate(text, [iid], [kwargs])
    assert result.criteria == {iid: expected}, text


def test_every_row_of_the_data_evaluates(data_dir):
    """All 541 rows' kwargs are accepted as they are in the file (null-valued keys included)."""
    rows = [json.loads(line) for line in (data_dir / "ifeval" / "input_data.jsonl").read_text().splitlines() if line]
    assert len(rows) == 541
    for row in rows:
        result = evaluate(row["prompt"], row["instruction_id_list"], row["kwargs"])
        assert len(result.criteria) == len(row["instruction_id_list"])
        # the prompt repeated verbatim always satisfies repeat_prompt's prefix check
        if "combination:repeat_prompt" in row["instruction_id_list"]:
            kw = row["kwargs"][row["instruction_id_list"].index("combination:repeat_prompt")]
            assert evaluate(kw["prompt_to_repeat"] + "\nAnswer.", ["combination:repeat_prompt"], [kw]).all_followed


def test_empty_response_follows_nothing():
    result = evaluate("   ", ["punctuation:no_comma", "keywords:forbidden_words"], [{}, {"forbidden_words": ["x"]}])
    assert result.criteria == {"punctuation:no_comma": False, "keywords:forbidden_words": False}
    assert result.fraction == 0.0


def test_fraction_and_repeated_ids():
    ids = ["punctuation:no_comma", "keywords:existence", "keywords:existence"]
    kwargs = [{}, {"keywords": ["cat"]}, {"keywords": ["dog"]}]
    result = evaluate("A cat, sleeping.", ids, kwargs)
    assert result.criteria == {"punctuation:no_comma": False, "keywords:existence": True, "keywords:existence#2": False}
    assert result.fraction == pytest.approx(1 / 3)
    assert result.failed == ["punctuation:no_comma", "keywords:existence#2"]


def test_loose_mode_forgives_a_preamble_and_markdown():
    text = "Sure! Here is my answer:\n\"All wrapped up.\""
    strict = evaluate(text, ["startend:quotation"], [{}])
    loose = evaluate(text, ["startend:quotation"], [{}], loose=True)
    assert not strict.all_followed and loose.all_followed
    assert len(loose_variants("a\nb\nc")) == 8
    assert evaluate("**SECTION 1** x", ["detectable_format:title"], [{}], loose=True).failed  # still needs a title


@pytest.mark.parametrize(
    "ids,kwargs,message",
    [
        (["no:such_id"], [{}], "unknown IFEval instruction id"),
        (["keywords:frequency"], [{"keyword": "a", "relation": "at least"}], "missing ['frequency']"),
        (["punctuation:no_comma"], [{"bogus": 1}], "unexpected ['bogus']"),
        (["length_constraints:number_words"], [{"num_words": "many", "relation": "at least"}], "must be an integer"),
        (["length_constraints:number_words"], [{"num_words": 3, "relation": "about"}], "relation must be"),
        (["punctuation:no_comma"], [{}, {}], "1 instruction ids but 2 kwargs"),
    ],
)
def test_malformed_constraints_raise(ids, kwargs, message):
    with pytest.raises((ConstraintError, ValueError), match=message.replace("[", r"\[").replace("]", r"\]")):
        evaluate("Some text.", ids, kwargs)


def test_int_kwargs_given_as_text_are_accepted():
    kwargs = [{"num_words": "3", "relation": "at least"}]
    assert evaluate("a b c", ["length_constraints:number_words"], kwargs).all_followed


def test_text_measures():
    assert count_words("It's a well-known fact.") == 6  # It, s, a, well, known, fact
    assert count_sentences("Dr. Smith went home. He was tired. e.g. this") >= 2
    assert count_sentences("Dr. Smith went home. He was tired.") == 2  # "Dr." is a known abbreviation
    assert count_capital_words("NASA and the U.S. ARMY don't WON'T") == 5  # NASA, U.S., ARMY, WO, N'T
    assert count_capital_words("I CANNOT use C++ AND/OR JAVA.") == 6  # I, CAN, NOT, C++, AND/OR, JAVA
    assert detect_language(LONG_EN) == "en"
    assert detect_language("12345 !!!") is None
    assert [detect_language("ciao bella") for _ in range(3)] == [detect_language("ciao bella")] * 3  # seeded
