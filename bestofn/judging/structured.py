"""Structured judge output: pydantic models give the JSON schema, and every reply is validated again.

Grammars (llama.cpp) enforce structure and enums but not integer ranges nor string lengths, and a reply cut
at max_tokens is truncated JSON: both are invalid here, never numbers.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

@lru_cache(maxsize=64)
def rubric_output_model(low: int, high: int) -> type[BaseModel]:
    """Reasoning first, then an integer score on [low, high]."""
    return create_model(
        f"RubricVerdict_{low}_{high}",
        __config__=ConfigDict(extra="forbid"),
        # No maxLength: llama.cpp unrolls it into a grammar too large to parse. max_tokens bounds the reasoning,
        # and a reply cut at max_tokens is invalid.
        reasoning=(str, Field(description="One or two short sentences of reasoning.")),
        # The range is an enum as well as minimum/maximum: grammars (llama.cpp) enforce enums, not ranges.
        score=(Literal[tuple(range(low, high + 1))], Field(
            description=f"An integer from {low} to {high}.", json_schema_extra={"minimum": low, "maximum": high}
        )),
    )


@lru_cache(maxsize=256)
def _schema_text(model: type[BaseModel]) -> str:
    return json.dumps(model.model_json_schema())


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The model's JSON schema: generated once per model (it costs about a millisecond, and judges ask for it
    on every call); each caller gets its own copy."""
    return json.loads(_schema_text(model))


def parse_reply(raw: str, finish_reason: str | None, model: type[BaseModel]) -> tuple[BaseModel | None, str | None]:
    """Return (parsed, None) or (None, reason). The whole reply must be the JSON object: no prose around it."""
    if finish_reason == "length":
        return None, "reply cut at max_tokens (finish_reason=length)"
    try:
        return model.model_validate_json(raw.strip(), strict=True), None
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reply"
        return None, f"{where}: {first['msg']}"
