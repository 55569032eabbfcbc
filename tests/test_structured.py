"""Malformed judge replies become invalid verdicts, never numbers."""

import json

import pytest

from bestofn.judging.structured import json_schema, parse_reply, rubric_output_model

Model = rubric_output_model(1, 10)


def test_valid_reply_parses():
    obj, why = parse_reply('{"reasoning": "fine", "score": 8}', "stop", Model)
    assert why is None and obj.score == 8 and obj.reasoning == "fine"


@pytest.mark.parametrize(
    "raw, finish, expected",
    [
        ('{"reasoning": "x", "score": 150}', "stop", "score: Input should be 1, 2, 3"),
        ('{"reasoning": "x", "score": 0}', "stop", "score: Input should be 1, 2, 3"),
        ('{"reasoning": "x", "score": "8/10"}', "stop", "score"),
        ('{"reasoning": "x", "score": "8"}', "stop", "score"),
        ('{"reasoning": "x", "score": 7.5}', "stop", "score"),
        ('{"reasoning": "the answer is fine and', "length", "max_tokens"),
        ('{"reasoning": "x", "score": 8', "stop", "reply"),
        ('Sure! Here is my verdict: {"reasoning": "x", "score": 8}', "stop", "reply"),
        ('{"reasoning": "x", "score": 8} I hope this helps', "stop", "reply"),
        ("8/10", "stop", "reply"),
        ('{"score": 8}', "stop", "reasoning"),
        ('{"reasoning": "x", "score": 8, "bonus": 1}', "stop", "bonus"),
    ],
)
def test_malformed_replies_are_invalid(raw, finish, expected):
    obj, why = parse_reply(raw, finish, Model)
    assert obj is None
    assert expected in why


def test_schema_has_range_as_enum_and_reasoning_first_but_no_max_length():
    schema = json_schema(Model)
    assert list(schema["properties"]) == ["reasoning", "score"]
    score = schema["properties"]["score"]
    assert score["enum"] == list(range(1, 11)) and score["type"] == "integer"  # grammars enforce enums
    assert score["minimum"] == 1 and score["maximum"] == 10
    assert "maxLength" not in json.dumps(schema)  # llama.cpp's grammar explodes on it
