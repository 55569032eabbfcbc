"""IFEval verification: a response against a prompt's `instruction_id_list` and `kwargs`.

Constraints look like one row of IFEval's input_data.jsonl:
    {"instruction_id_list": ["punctuation:no_comma", "length_constraints:number_words"],
     "kwargs": [{}, {"relation": "at least", "num_words": 300}]}

Strict mode checks the response as it is; loose mode (the paper's second metric) passes an instruction when any
of eight variants passes: the response, without its first line, without its last line, without both, and each of
these with every `*` removed. An empty response follows nothing.
"""

from __future__ import annotations

import inspect
from functools import lru_cache
from typing import Any

from bestofn.judging.verifiers.base import CheckResult, ConstraintError
from bestofn.judging.verifiers.ifeval_rules import RULES

__all__ = ["RULES", "applies", "check", "evaluate", "loose_variants"]


def applies(constraints: dict[str, Any], reference: str | None = None) -> bool:
    return bool(constraints.get("instruction_id_list"))


@lru_cache(maxsize=None)
def _params(instruction_id: str) -> dict[str, str]:
    """The keyword arguments a rule takes, with their annotation (as text)."""
    sig = inspect.signature(RULES[instruction_id])
    return {n: str(p.annotation) for n, p in sig.parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}


def _arguments(instruction_id: str, kwargs: dict[str, Any] | None) -> dict[str, Any]:
    if instruction_id not in RULES:
        raise ConstraintError(f"unknown IFEval instruction id {instruction_id!r}")
    given = {k: v for k, v in (kwargs or {}).items() if v is not None}  # IFEval rows carry unused keys as null
    wanted = _params(instruction_id)
    extra = sorted(set(given) - set(wanted))
    missing = sorted(set(wanted) - set(given))
    if extra or missing:
        problem = "; ".join(
            part for part in (f"unexpected {extra}" if extra else "", f"missing {missing}" if missing else "") if part
        )
        raise ConstraintError(f"IFEval instruction {instruction_id!r}: kwargs {problem}")
    out = {}
    for name, value in given.items():
        if wanted[name] == "int":
            try:
                value = int(value)
            except (TypeError, ValueError):
                raise ConstraintError(
                    f"IFEval instruction {instruction_id!r}: {name} must be an integer, got {value!r}"
                ) from None
        out[name] = value
    return out


def loose_variants(text: str) -> list[str]:
    lines = text.split("\n")
    no_first = "\n".join(lines[1:]).strip()
    no_last = "\n".join(lines[:-1]).strip()
    no_both = "\n".join(lines[1:-1]).strip()
    plain = [text, no_first, no_last, no_both]
    return plain[:1] + [text.replace("*", "")] + plain[1:] + [v.replace("*", "") for v in plain[1:]]


def evaluate(
    text: str, instruction_id_list: list[str], kwargs: list[dict[str, Any]] | None = None, *, loose: bool = False
) -> CheckResult:
    """Check every instruction; criteria keys are the instruction ids (a repeated id gets a `#2` suffix)."""
    if kwargs is not None and len(kwargs) != len(instruction_id_list):
        raise ConstraintError(
            f"IFEval constraints: {len(instruction_id_list)} instruction ids but {len(kwargs)} kwargs entries"
        )
    per_id = kwargs if kwargs is not None else [{}] * len(instruction_id_list)
    args = [_arguments(iid, kw) for iid, kw in zip(instruction_id_list, per_id)]
    variants = loose_variants(text) if loose else [text]
    criteria: dict[str, bool] = {}
    for iid, a in zip(instruction_id_list, args):
        ok = any(v.strip() and RULES[iid](v, **a) for v in variants)
        key, k = iid, 1
        while key in criteria:
            k += 1
            key = f"{iid}#{k}"
        criteria[key] = bool(ok)
    return CheckResult(criteria=criteria, notes=[f"not followed: {name}" for name, ok in criteria.items() if not ok])


def check(
    text: str, constraints: dict[str, Any], *, reference: str | None = None, loose: bool = False
) -> CheckResult:
    ids = constraints.get("instruction_id_list")
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise ConstraintError("IFEval constraints: instruction_id_list must be a list of instruction ids")
    kwargs = constraints.get("kwargs")
    if kwargs is not None and not (isinstance(kwargs, list) and all(isinstance(k, dict | None) for k in kwargs)):
        raise ConstraintError("IFEval constraints: kwargs must be a list of objects, one per instruction id")
    return evaluate(text, ids, kwargs, loose=loose)


def check_loose(text: str, constraints: dict[str, Any], *, reference: str | None = None) -> CheckResult:
    return check(text, constraints, reference=reference, loose=True)
