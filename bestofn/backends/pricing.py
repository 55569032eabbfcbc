"""Token prices, so that a Selection's `cost.usd` is filled where a price is known, and the calls without one
are counted (`cost.unpriced_calls`) and shown beside the money: `usd` never quietly covers only some calls.

- A price you set wins, for that exact spec: `set_price("openai:my-finetune", 0.15, 0.60)`, a backend's
  `price=(0.15, 0.60)` (`OpenAIBackend(model, price=...)`), or `BESTOFN_PRICES=/path/prices.json` holding
  `{"openai:gpt-4o-mini": [0.15, 0.60], ...}` (US dollars per million prompt and completion tokens).
- Else `openai:` and `anthropic:` specs are priced by genai-prices (pydantic's maintained price data, the
  `prices` extra that the `openai` and `anthropic` extras pull). Its data is the copy bundled with the
  installed package: we never start its network updater, so pricing works offline and changes only with the
  package version. It knows each model by its own name and snapshots (`gpt-4o-mini-2024-07-18` is
  `gpt-4o-mini`; `o3-pro` is not `o3`, `claude-opus-4-6` is not `claude-opus-4`), tiered prices included. A
  model it does not know is unpriced, never priced as a namesake.
- Self-hosted backends (`local`, `vllm`, `vllm-offline`) are unpriced unless you set a price. Cached
  completions cost nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from bestofn.errors import ConfigError
from bestofn.records import Usage

Price = tuple[float, float]  # USD per 1M prompt tokens, per 1M completion tokens

#: backend kind of a spec -> genai-prices' provider id
PROVIDERS = {"openai": "openai", "anthropic": "anthropic"}

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
    """The price set for exactly this spec (`set_price`, then `BESTOFN_PRICES`), or None."""
    for table in (_overrides, _from_file()):
        if spec in table:
            return table[spec]
    return None


def usd(usage: Usage, price: Price | None) -> float | None:
    if price is None:
        return None
    return (usage.prompt_tokens * price[0] + usage.completion_tokens * price[1]) / 1_000_000


def usd_for(spec: str, usage: Usage, price: Price | None = None) -> float | None:
    """US dollars for one call of `spec` (a backend's own `price` first), or None where no price is known."""
    price = price or price_for(spec)
    if price is not None:
        return usd(usage, price)
    kind, _, model = spec.partition(":")
    if kind not in PROVIDERS or not model:
        return None
    try:
        from genai_prices import Usage as Tokens, calc_price
    except ImportError:  # installed without the `prices` extra: the call is counted unpriced
        return None
    tokens = Tokens(input_tokens=usage.prompt_tokens, output_tokens=usage.completion_tokens)
    try:  # the bundled data only: genai_prices.UpdatePrices (its network updater) is never started
        return float(calc_price(tokens, model, provider_id=PROVIDERS[kind]).total_price)
    except LookupError:  # a model it does not know
        return None
