"""Regex, JSON and JSON-schema verifiers, and the check registry."""

from __future__ import annotations

import pytest

from bestofn.errors import ConfigError
from bestofn.judging.verifiers import CHECKS, ConstraintError, applicable, require, verify
from bestofn.judging.verifiers import jsonschema_check, regex

SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0}},
    "required": ["name", "age"],
    "additionalProperties": False,
}


@pytest.mark.parametrize(
    "text,constraints,expected",
    [
        ("The capital is Paris.", {"regex": r"\bParis\b"}, {"regex": True}),
        ("The capital is paris.", {"regex": r"\bParis\b"}, {"regex": False}),
        ("The capital is paris.", {"regex": r"(?i)\bParis\b"}, {"regex": True}),
        ("  yes \n", {"regex": "yes|no", "regex_mode": "fullmatch"}, {"regex": True}),
        ("yes, sure", {"regex": "yes|no", "regex_mode": "fullmatch"}, {"regex": False}),
        ("# Title\nbody", {"regex": ["(?m)^# ", "body"]}, {"regex[0]": True, "regex[1]": True}),
        ("Title\nbody", {"regex": ["(?m)^# ", "body"]}, {"regex[0]": False, "regex[1]": True}),
    ],
)
def test_regex(text, constraints, expected):
    assert regex.check(text, constraints).criteria == expected


@pytest.mark.parametrize(
    "constraints,message",
    [
        ({"regex": "("}, "bad pattern"),
        ({"regex": 5}, "expected a pattern"),
        ({"regex": "a", "regex_mode": "x"}, "regex_mode"),
    ],
)
def test_regex_errors(constraints, message):
    with pytest.raises(ConstraintError, match=message):
        regex.check("a", constraints)


@pytest.mark.parametrize(
    "text,ok",
    [('{"a": 1}', True), ("```json\n[1, 2]\n```", True), ("```\n\"x\"\n```", True), ('Sure: {"a": 1}', False),
     ("{'a': 1}", False), ("", False)],
)
def test_json_validity(text, ok):
    assert jsonschema_check.check_json(text, {"json": True}).criteria == {"json": ok}


@pytest.mark.parametrize(
    "text,ok,note",
    [
        ('{"name": "Ada", "age": 36}', True, None),
        ('```json\n{"name": "Ada", "age": 36}\n```', True, None),
        ('{"name": "Ada", "age": -1}', False, "at age: -1 is less than the minimum of 0"),
        ('{"name": "Ada"}', False, "'age' is a required property"),
        ('{"name": "Ada", "age": 3, "x": 1}', False, "Additional properties"),
        ("not json", False, "not JSON"),
    ],
)
def test_json_schema(text, ok, note):
    result = jsonschema_check.check_schema(text, {"json_schema": SCHEMA})
    assert result.criteria == {"json_schema": ok}
    if note:
        assert note in result.notes[0]


def test_bad_schema_is_a_constraint_error():
    with pytest.raises(ConstraintError, match="invalid schema"):
        jsonschema_check.check_schema("{}", {"json_schema": {"type": "nonsense"}})


def test_registry_picks_checks_from_constraints():
    assert applicable({}) == []
    assert applicable({"answer": "3", "regex": "3"}) == ["exact_numeric", "regex"]
    assert applicable({"json": True, "json_schema": SCHEMA}) == ["json", "json_schema"]
    assert applicable({"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}) == ["ifeval"]
    # a named check reads only its own constraints; exact_numeric may fall back to the reference answer
    assert applicable({"regex": "x"}, check="exact_numeric") == []
    assert applicable({}, check="exact_numeric", reference="#### 4") == ["exact_numeric"]
    assert applicable({}, reference="#### 4") == []  # never guessed from a reference
    results = verify("The answer is 3", {"answer": 3, "regex": r"answer is \d"})
    found = {k: r.criteria for k, r in results.items()}
    assert found == {"exact_numeric": {"exact_numeric": True}, "regex": {"regex": True}}
    assert set(CHECKS) == {"ifeval", "ifeval_loose", "exact_numeric", "regex", "json", "json_schema"}


def test_require_names_unknown_checks():
    require(["ifeval", "json_schema"])  # installed in dev
    with pytest.raises(ConfigError, match="unknown verifier check 'bogus'"):
        require(["bogus"])
