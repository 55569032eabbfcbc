"""Logprob-weighted scores (G-Eval): the expected score over the score tokens instead of the one sampled.

The reply is a JSON object; we find where the integer value of a field starts, map that character offset to a
token, and read the top logprobs there (a direct score, bestofn.judging.direct: where its bare integer stands). Each alternative token that spells an in-range integer contributes its
probability to that value. A token that is a prefix of longer in-range values ("1" on a 1-10 scale, where
tokenizers split "10" into "1", "0") is split using the next position's distribution when the sampled token was
that prefix; otherwise its mass goes to the one-digit value (a direct score: to the value nearest the sampled
score, since the reply holds no reasoning that settled it), and the details say so. The distribution is
renormalised over the in-range values it covers. When the backend returned no logprobs, the reply's text does
not match its tokens, or the in-range mass is too small to trust, the sampled score is kept and the reason is
recorded: a clear fallback, never a silent one.
"""

from __future__ import annotations

import math
from typing import Any

from bestofn.backends.base import Completion, TokenLogprob

MIN_MASS = 0.5  # the in-range values must carry at least this much of the probability to replace the sample


def value_offsets(raw: str) -> dict[str, int]:
    """Character offset of each top-level value in a JSON object text (keys -> where their value starts)."""
    out: dict[str, int] = {}
    i, n, depth = 0, len(raw), 0
    key: str | None = None
    expecting_value = False
    while i < n:
        ch = raw[i]
        if ch == '"':
            j = i + 1
            while j < n and raw[j] != '"':
                j += 2 if raw[j] == "\\" else 1
            if depth == 1 and not expecting_value:
                key = raw[i + 1 : j]
            elif depth == 1 and expecting_value and key is not None:
                out[key] = i
                expecting_value = False
            i = j + 1
            continue
        if ch in "{[":
            if depth == 1 and expecting_value and key is not None:
                out[key] = i
                expecting_value = False
            depth += 1
        elif ch in "}]":
            depth -= 1
        elif ch == ":" and depth == 1:
            expecting_value = True
        elif depth == 1 and expecting_value and not ch.isspace() and key is not None:
            out[key] = i
            expecting_value = False
        i += 1
    return out


def _token_at(tokens: list[TokenLogprob], offset: int) -> int | None:
    position = 0
    for index, token in enumerate(tokens):
        end = position + len(token.token)
        if position <= offset < end:
            return index if token.token[: offset - position].strip() == "" else None
        position = end
    return None


def _digits(token: str) -> str | None:
    text = token.strip()
    return text if text.isdigit() else None


def expected_score(completion: Completion, field: str, low: int, high: int) -> tuple[float | None, dict[str, Any]]:
    """(expected score, details) or (None, {"logprob_fallback": reason}), for the integer value of a JSON field."""
    start = value_offsets(completion.text).get(field) if completion.logprobs else None
    return expected_at(completion, start, f"the {field!r} value", low, high)


def expected_at(
    completion: Completion, offset: int | None, what: str, low: int, high: int, *, nearest: float | None = None
) -> tuple[float | None, dict[str, Any]]:
    """The expected score over the score tokens at character `offset` of the reply (`what` names it in the
    fallback's reason). `nearest`: a prefix token whose split the reply does not show ("1" of "10" where "9" was
    sampled) gives its probability to the value nearest `nearest` among those it begins, instead of the one-digit
    value."""
    tokens = completion.logprobs
    if not tokens:
        return None, {"logprob_fallback": "the backend returned no logprobs"}
    text = completion.text
    if "".join(t.token for t in tokens) != text:
        return None, {"logprob_fallback": "the reply's tokens do not spell its text"}
    index = None if offset is None else _token_at(tokens, offset)
    if index is None or not tokens[index].top:
        return None, {"logprob_fallback": f"no top logprobs at {what}"}
    values = [str(v) for v in range(low, high + 1)]
    sampled = _digits(tokens[index].token)
    probs: dict[int, float] = {}
    ambiguous = 0.0

    def add(value: str, p: float) -> None:
        if value in values:
            probs[int(value)] = probs.get(int(value), 0.0) + p

    for alt, logprob in tokens[index].top.items():
        digits, p = _digits(alt), math.exp(logprob)
        if digits is None:
            continue
        longer = [v for v in values if v.startswith(digits) and v != digits]
        if not longer:
            add(digits, p)
        elif digits == sampled and index + 1 < len(tokens) and tokens[index + 1].top:
            following = {t: math.exp(lp) for t, lp in tokens[index + 1].top.items()}
            ends = sum(q for t, q in following.items() if _digits(t) is None)
            more = {digits + t.strip(): q for t, q in following.items() if _digits(t) and digits + t.strip() in values}
            total = ends + sum(more.values())
            if total > 0:
                add(digits, p * ends / total)
                for value, q in more.items():
                    add(value, p * q / total)
        else:
            ambiguous += p
            add(digits if nearest is None else min([digits, *longer], key=lambda v: (abs(int(v) - nearest), int(v))), p)
    mass = sum(probs.values())
    if mass < MIN_MASS:
        return None, {"logprob_fallback": f"the in-range score tokens carry only {mass:.2f} of the probability"}
    expected = sum(v * p for v, p in probs.items()) / mass
    details: dict[str, Any] = {
        "score_method": "logprob",
        "distribution": {str(v): round(p / mass, 4) for v, p in sorted(probs.items())},
        "mass": round(mass, 4),
    }
    if ambiguous:
        details["ambiguous_prefix_mass"] = round(ambiguous, 4)
        if nearest is not None:
            details["ambiguous_prefix_to"] = "the value nearest the sampled score"
    return expected, details


def score_from(
    completion: Completion | None, field: str, sampled: float, low: int, high: int
) -> tuple[float, dict[str, Any]]:
    """The logprob-weighted score of a JSON field where possible, else the sampled one; details say which and why."""
    if completion is None:
        return _chosen(sampled, None, {"logprob_fallback": "no reply"})
    return _chosen(sampled, *expected_score(completion, field, low, high))


def score_at(
    completion: Completion, offset: int, what: str, sampled: int, low: int, high: int
) -> tuple[float, dict[str, Any]]:
    """The same for a bare integer at character `offset` of the reply (a direct score), read with the prefix rule
    `nearest` the sampled value."""
    return _chosen(float(sampled), *expected_at(completion, offset, what, low, high, nearest=sampled))


def _chosen(sampled: float, expected: float | None, details: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    if expected is None:
        return sampled, {"score_method": "sampled", **details}
    return expected, {**details, "sampled": sampled}
