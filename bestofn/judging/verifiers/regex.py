"""Regex verification: the response must match the pattern(s) that came with the prompt.

    {"regex": "^Answer: (yes|no)$"}                    one pattern, searched anywhere (re.search)
    {"regex": ["\\bParis\\b", "^# "], "regex_mode": "fullmatch"}   every pattern must match the whole response

Python `re` syntax; inline flags such as (?i) and (?m) set case-insensitivity and multiline anchors. In fullmatch
mode the response is stripped of surrounding whitespace first.
"""

from __future__ import annotations

import re
from typing import Any

from bestofn.judging.verifiers.base import CheckResult, ConstraintError

MODES = ("search", "fullmatch")


def applies(constraints: dict[str, Any], reference: str | None = None) -> bool:
    return bool(constraints.get("regex"))


def _patterns(constraints: dict[str, Any]) -> list[re.Pattern[str]]:
    raw = constraints.get("regex")
    patterns = [raw] if isinstance(raw, str) else raw
    if not isinstance(patterns, list) or not patterns or not all(isinstance(p, str) for p in patterns):
        raise ConstraintError(f"regex: expected a pattern or a list of patterns, got {raw!r}")
    compiled = []
    for p in patterns:
        try:
            compiled.append(re.compile(p))
        except re.error as exc:
            raise ConstraintError(f"regex: bad pattern {p!r}: {exc}") from exc
    return compiled


def check(text: str, constraints: dict[str, Any], *, reference: str | None = None) -> CheckResult:
    mode = constraints.get("regex_mode", "search")
    if mode not in MODES:
        raise ConstraintError(f"regex_mode must be one of {MODES}, got {mode!r}")
    patterns = _patterns(constraints)
    criteria: dict[str, bool] = {}
    for i, pattern in enumerate(patterns):
        matched = pattern.fullmatch(text.strip()) if mode == "fullmatch" else pattern.search(text)
        criteria["regex" if len(patterns) == 1 else f"regex[{i}]"] = matched is not None
    notes = [
        f"{name}: no {mode} for {p.pattern!r}" for (name, ok), p in zip(criteria.items(), patterns) if not ok
    ]
    return CheckResult(criteria, notes)
