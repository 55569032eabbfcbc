"""Trivial judges every report shows beside the panels: a panel that does not beat them has learnt nothing.

They go through the same protocol as a panel (both orders; a disagreement between the orders is a tie), so
their bias figures mean the same thing: prefer-first picks whatever is shown first, hence is perfectly
position-biased and, over both orders, always ties (50% accuracy with half credit).
"""

from __future__ import annotations

from typing import Callable

from bestofn.apps.ab.gold import GoldPair, GoldPoint
from bestofn.apps.ab.metrics import ItemResult
from bestofn.records import sha256_hex


def combine(first: str | None, second: str | None) -> str | None:
    """Final decision from the two orders (both in gold orientation): a vote, a = +1, b = -1, tie = 0;
    a failed order does not vote; no vote at all is no decision (None)."""
    votes = [{"a": 1, "b": -1, "tie": 0}[d] for d in (first, second) if d is not None]
    if not votes:
        return None
    total = sum(votes)
    return "a" if total > 0 else "b" if total < 0 else "tie"


def _longer(shown_first: str, shown_second: str) -> str:
    if len(shown_first) == len(shown_second):
        return "tie"
    return "first" if len(shown_first) > len(shown_second) else "second"


def _first(shown_first: str, shown_second: str) -> str:
    return "first"


def _random(seed: int) -> Callable[[str, str], str]:
    def pick(shown_first: str, shown_second: str) -> str:
        h = int(sha256_hex("random-baseline", seed, shown_first, shown_second)[:8], 16)
        return "first" if h % 2 == 0 else "second"

    return pick


def _pairwise(item: GoldPair, rule: Callable[[str, str], str]) -> ItemResult:
    def orient(choice: str, first_is_a: bool) -> str:
        if choice == "tie":
            return "tie"
        return "a" if (choice == "first") == first_is_a else "b"

    one = orient(rule(item.response_a, item.response_b), True)
    two = orient(rule(item.response_b, item.response_a), False)
    return ItemResult(item_id=item.id, subset=item.subset, gold=item.label, pred=combine(one, two), first=one,
                      second=two, len_a=len(item.response_a), len_b=len(item.response_b), usd=0.0)


def _pointwise(item: GoldPoint, pred: str) -> ItemResult:
    return ItemResult(item_id=item.id, subset=item.subset, gold=item.label, pred=pred, usd=0.0)


def pairwise_baselines(items: list[GoldPair], seed: int = 0) -> dict[str, list[ItemResult]]:
    return {
        "prefer-longer": [_pairwise(i, _longer) for i in items],
        "prefer-first": [_pairwise(i, _first) for i in items],
        "random": [_pairwise(i, _random(seed)) for i in items],
    }


def pointwise_baselines(items: list[GoldPoint], seed: int = 0) -> dict[str, list[ItemResult]]:
    """For a safety set: call everything safe (the majority class), or flip a seeded coin."""
    def coin(i: GoldPoint) -> str:
        return "safe" if int(sha256_hex("random-baseline", seed, i.id)[:8], 16) % 2 == 0 else "unsafe"

    return {
        "always-safe": [_pointwise(i, "safe") for i in items],
        "random": [_pointwise(i, coin(i)) for i in items],
    }


def baselines(items: list, seed: int = 0) -> dict[str, list[ItemResult]]:
    if items and isinstance(items[0], GoldPoint):
        return pointwise_baselines(items, seed)
    return pairwise_baselines(items, seed)
