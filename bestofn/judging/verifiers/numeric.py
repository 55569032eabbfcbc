"""Exact-match numeric answers (GSM8K, SVAMP, arithmetic): find the final answer in a response, compare exactly.

The final answer is, in this order of preference (the last occurrence of the first kind found):
  1. GSM8K's marker            `#### 72`
  2. a LaTeX box               `\\boxed{72}`
  3. an answer line            `A: 72`, `Answer: $72` (example_model_solutions.jsonl writes `A: N`)
  4. an answer phrase          `the answer is 72`, `final answer: 72`
  5. the last number in the text
Numbers are normalised before comparing: thousands separators, a currency sign or a percent sign, trailing
zeros (`18.00` == `18`), and fractions (`3/4` == `0.75`) are all handled; comparison is exact (rational numbers,
no floating-point tolerance). The reference is `constraints["answer"]` (a number, or text holding one, such as
SVAMP's `51.0` or a GSM8K solution ending in `#### 72`), else the prompt's reference answer.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from fractions import Fraction
from typing import Any

from bestofn.judging.verifiers.base import CheckResult, ConstraintError

# A number not glued to a word or to another number: -1,234.5, .5, 3/4; a leading minus only when it is a sign.
NUMBER = r"(?<![\w./])-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)?(?:\.\d+)?(?<=\d)(?:/\d+)?"
_NUMBER = re.compile(NUMBER)
_MARKER = re.compile(r"####\s*\$?\s*(" + NUMBER + ")")
_BOXED = re.compile(r"\\boxed\s*\{\s*\\?\$?\s*(" + NUMBER + r")\s*\}")
_LINE = re.compile(r"(?im)^[\s*#>]*(?:a|answer|final answer)\s*[:=]\s*(.*)$")
_PHRASE = re.compile(r"(?i)\b(?:final answer|answer)\b(?:\s+is\s*:?|\s*[:=])(.{0,40})")
_NUMBER_FIRST = re.compile(r"[\s*$€£\\]*(" + NUMBER + ")")


def applies(constraints: dict[str, Any], reference: str | None = None) -> bool:
    return constraints.get("answer") is not None or reference is not None


def to_number(token: str) -> Fraction | None:
    """'1,234.50' -> 1234.5, '3/4' -> 3/4, '-.5' -> -1/2; None when it is not a number."""
    token = token.strip().replace(",", "").replace(" ", "").rstrip(".")
    try:
        if "/" in token:
            num, den = token.split("/", 1)
            den_value = Fraction(Decimal(den))
            return Fraction(Decimal(num)) / den_value if den_value else None
        return Fraction(Decimal(token))
    except (InvalidOperation, ValueError, ZeroDivisionError):
        return None


def _first_number(text: str) -> str | None:
    m = _NUMBER_FIRST.match(text)
    return m.group(1) if m else None


def extract_answer(text: str) -> tuple[Fraction, str] | None:
    """The final numeric answer of a response and how it was found, or None."""
    for how, found in (
        ("####", [m.group(1) for m in _MARKER.finditer(text)]),
        ("boxed", [m.group(1) for m in _BOXED.finditer(text)]),
        ("answer line", [n for m in _LINE.finditer(text) if (n := _first_number(m.group(1)))]),
        ("answer phrase", [n for m in _PHRASE.finditer(text) if (n := _first_number(m.group(1)))]),
        ("last number", _NUMBER.findall(text)),
    ):
        for token in reversed(found):
            value = to_number(token)
            if value is not None:
                return value, how
    return None


def reference_answer(constraints: dict[str, Any], reference: str | None = None) -> Fraction:
    raw = constraints.get("answer", reference)
    if isinstance(raw, bool) or raw is None:
        raise ConstraintError(f"exact_numeric: the reference answer must be a number, got {raw!r}")
    if isinstance(raw, int):
        return Fraction(raw)
    if isinstance(raw, float):
        return Fraction(Decimal(repr(raw)))
    found = extract_answer(str(raw))
    if found is None:
        raise ConstraintError(f"exact_numeric: no number in the reference answer {str(raw)[:80]!r}")
    return found[0]


def show(value: Fraction) -> str:
    if value.denominator == 1:
        return str(value.numerator)
    decimal = Decimal(value.numerator) / Decimal(value.denominator)
    return f"{decimal.normalize()}" if Fraction(decimal) == value else f"{value.numerator}/{value.denominator}"


def check(text: str, constraints: dict[str, Any], *, reference: str | None = None) -> CheckResult:
    expected = reference_answer(constraints, reference)
    found = extract_answer(text)
    details: dict[str, Any] = {"expected": show(expected), "found": None, "found_by": None}
    if found is None:
        return CheckResult({"exact_numeric": False}, ["exact_numeric: no number in the response"], details)
    value, how = found
    details.update(found=show(value), found_by=how)
    ok = value == expected
    notes = [] if ok else [f"exact_numeric: answer {show(value)} ({how}) != expected {show(expected)}"]
    return CheckResult({"exact_numeric": ok}, notes, details)
