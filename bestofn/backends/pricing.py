"""Token prices, so that a Selection's `cost.usd` is filled where a price is known (null elsewhere).

Prices are US dollars per million tokens, (prompt, completion), list prices of the providers' standard tier
as published in 2025; they change, so override them:

- in Python: `set_price("openai:gpt-4o-mini", 0.15, 0.60)` or `OpenAIBackend(model, price=(0.15, 0.60))`;
- from a file: `BESTOFN_PRICES=/path/prices.json` holding `{"openai:gpt-4o-mini": [0.15, 0.60], ...}`.

A spec matches its own entry first (`openai:gpt-4o-mini-2024-07-18`), then the longest entry it starts with
(`openai:gpt-4o-mini`), within its own backend kind only. Self-hosted backends (`local`, `vllm`,
`vllm-offline`) have no price unless you set one. Cached completions cost nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bestofn.errors import ConfigError
from bestofn.records import Usage

Price = tuple[float, float]  # USD per 1M prompt tokens, per 1M completion tokens

PRICES: dict[str, Price] = {
    "openai:gpt-4o-mini": (0.15, 0.60),
    "openai:gpt-4o": (2.50, 10.00),
    "openai:gpt-4.1-nano": (0.10, 0.40),
    "openai:gpt-4.1-mini": (0.40, 1.60),
    "openai:gpt-4.1": (2.00, 8.00),
    "openai:gpt-5-nano": (0.05, 0.40),
    "openai:gpt-5-mini": (0.25, 2.00),
    "openai:gpt-5": (1.25, 10.00),
    "openai:o3-mini": (1.10, 4.40),
    "openai:o4-mini": (1.10, 4.40),
    "openai:o3": (2.00, 8.00),
    "anthropic:claude-3-haiku": (0.25, 1.25),
    "anthropic:claude-3-5-haiku": (0.80, 4.00),
    "anthropic:claude-haiku-4-5": (1.00, 5.00),
    "anthropic:claude-3-5-sonnet": (3.00, 15.00),
    "anthropic:claude-3-7-sonnet": (3.00, 15.00),
    "anthropic:claude-sonnet-4": (3.00, 15.00),
    "anthropic:claude-opus-4": (15.00, 75.00),
    "anthropic:claude-opus-4-5": (5.00, 25.00),
}

_overrides: dict[str, Price] = {}
_file_cache: tuple[str, dict[str, Price]] | None = None


def set_price(spec: str, prompt_per_mtok: float, completion_per_mtok: float) -> None:
    """Set (or correct) the price of a model spec, e.g. `set_price("vllm:my-model", 0.0, 0.0)`."""
    if prompt_per_mtok < 0 or completion_per_mtok < 0:
        raise ConfigError(f"prices must not be negative, got {prompt_per_mtok}, {completion_per_mtok} for {spec}")
    _overrides[spec] = (float(prompt_per_mtok), float(completion_per_mtok))


def _from_file() -> dict[str, Price]:
    global _file_cache
    path = os.environ.get("BESTOFN_PRICES")
    if not path:
        return {}
    if _file_cache is not None and _file_cache[0] == path:
        return _file_cache[1]
    try:
        raw: Any = json.loads(Path(path).read_text())
        table = {str(k): (float(v[0]), float(v[1])) for k, v in raw.items()}
    except (OSError, ValueError, TypeError, IndexError, AttributeError) as exc:
        raise ConfigError(f"BESTOFN_PRICES={path}: expected a JSON object of spec -> [prompt, completion]: {exc}") from exc
    _file_cache = (path, table)
    return table


def price_for(spec: str) -> Price | None:
    """The price of a spec (`openai:gpt-4o-mini-2024-07-18`), or None where unknown."""
    for table in (_overrides, _from_file(), PRICES):
        if spec in table:
            return table[spec]
    for table in (_overrides, _from_file(), PRICES):
        matches = [k for k in table if spec.startswith(k)]
        if matches:
            return table[max(matches, key=len)]
    return None


def usd(usage: Usage, price: Price | None) -> float | None:
    if price is None:
        return None
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000
