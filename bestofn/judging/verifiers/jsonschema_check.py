"""JSON verification: the response is JSON ({"json": true}), and valid against a JSON schema ({"json_schema": S}).

The whole response must be one JSON value; a surrounding markdown code fence (```json ... ```) is allowed, as
in IFEval's json_format check. Schemas use the draft they declare in `$schema` (else the latest), through the
`jsonschema` library; a malformed schema is a ConstraintError, not a failed candidate.
"""

from __future__ import annotations

import json
from typing import Any

from bestofn.errors import MissingExtraError
from bestofn.judging.verifiers.base import CheckResult, ConstraintError


def applies_json(constraints: dict[str, Any], reference: str | None = None) -> bool:
    return bool(constraints.get("json"))


def applies_schema(constraints: dict[str, Any], reference: str | None = None) -> bool:
    return constraints.get("json_schema") is not None


def strip_fence(text: str) -> str:
    body = text.strip()
    if body.startswith("```"):
        first, _, rest = body.partition("\n")
        if first.strip("`").strip().lower() in ("", "json") and rest.rstrip().endswith("```"):
            body = rest.rstrip().removesuffix("```")
    return body.strip()


def parse(text: str) -> tuple[bool, Any, str | None]:
    """(ok, value, error message)."""
    try:
        return True, json.loads(strip_fence(text)), None
    except ValueError as exc:
        return False, None, f"not JSON: {exc}"


def check_json(text: str, constraints: dict[str, Any], *, reference: str | None = None) -> CheckResult:
    ok, _, error = parse(text)
    return CheckResult({"json": ok}, [error] if error else [])


def _validator(schema: Any) -> Any:
    try:
        import jsonschema
    except ModuleNotFoundError as exc:
        raise MissingExtraError("the json_schema verifier", "verify", "jsonschema") from exc
    if not isinstance(schema, (dict, bool)):
        raise ConstraintError(f"json_schema: a schema is an object, got {type(schema).__name__}")
    cls = jsonschema.validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ConstraintError(f"json_schema: invalid schema: {exc.message}") from exc
    return cls(schema)


def check_schema(text: str, constraints: dict[str, Any], *, reference: str | None = None) -> CheckResult:
    validator = _validator(constraints["json_schema"])
    ok, value, error = parse(text)
    if not ok:
        return CheckResult({"json_schema": False}, [f"json_schema: {error}"])
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "/".join(str(p) for p in first.absolute_path) or "(root)"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return CheckResult({"json_schema": False}, [f"json_schema: at {where}: {first.message}{more}"])
    return CheckResult({"json_schema": True})
