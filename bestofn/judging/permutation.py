"""Permutations from a listwise model call, and RankGPT-style sliding windows with several passes.

Generic over items: nothing here knows about candidates or documents. The listwise judge and the `llm-listwise`
reranker both use it:

    labels(3)                                  -> ["A", "B", "C"]
    model = permutation_model(["A", "B", "C"]) -> pydantic model {"ranking": [enum of the labels]}, n items
    permutation_problem(["A", "A", "C"], ["A", "B", "C"]) -> "'A' appears twice; 'B' is missing"
    repair(["A", "A", "C"], ["A", "B", "C"])   -> ["A", "C", "B"] (first occurrences, then missing in shown order)
    result = await sliding_windows(items, rank_window, window=4, step=2)

`rank_window(window_items)` is any async callable that returns a best-first permutation of the indices
0..len(window_items)-1 (use `to_indices` on a validated or repaired label list). A broken permutation is never
trusted: validate it, re-ask, and repair what is still broken.

One back-to-front pass of a window of w moving by s only settles the top w - s positions (RankGPT's top-k
trick); `sliding_windows` keeps passing over the unsettled rest until a pass changes nothing, the whole list is
settled, or `max_passes` is reached, so the whole order is sorted, not only its head.
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Awaitable, Callable, Generic, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, create_model

T = TypeVar("T")

RankWindow = Callable[[list[T]], Awaitable[list[int]]]


def labels(n: int) -> list[str]:
    """Short, single-token-ish labels: A..Z, then A1..Z1, A2.. (enum values for the grammar)."""
    letters = string.ascii_uppercase
    return [letters[i % 26] + (str(i // 26) if i >= 26 else "") for i in range(n)]


def permutation_model(window_labels: Sequence[str]) -> type[BaseModel]:
    """{"ranking": [label, ...]}: exactly len(labels) items, each one of the labels (an enum the grammar enforces;
    uniqueness is checked by `permutation_problem`, since grammars don't enforce it)."""
    return _permutation_model(tuple(window_labels))


@lru_cache(maxsize=64)
def _permutation_model(window_labels: tuple[str, ...]) -> type[BaseModel]:
    n = len(window_labels)
    enum = Literal[window_labels]  # type: ignore[valid-type]
    return create_model(
        f"Permutation_{n}",
        __config__=ConfigDict(extra="forbid"),
        ranking=(list[enum], Field(min_length=n, max_length=n, description="Every label exactly once, best first.")),
    )


def permutation_problem(returned: Sequence[str], expected: Sequence[str]) -> str | None:
    """None when `returned` holds every expected label exactly once, else what is wrong (one line)."""
    problems = []
    seen: set[str] = set()
    for label in returned:
        if label not in expected:
            problems.append(f"{label!r} is not one of the labels")
        elif label in seen:
            problems.append(f"{label!r} appears more than once")
        seen.add(label)
    missing = [label for label in expected if label not in seen]
    if missing:
        problems.append(f"missing {', '.join(repr(m) for m in missing)}")
    if not problems:
        return None
    return f"the ranking must list each of {', '.join(expected)} exactly once: " + "; ".join(dict.fromkeys(problems))


def repair(returned: Sequence[str], expected: Sequence[str]) -> list[str]:
    """Keep the first occurrence of each known label, drop unknown ones, append the missing ones in the order
    they were shown (RankGPT's repair). Returns a full permutation of `expected`."""
    kept = list(dict.fromkeys(label for label in returned if label in expected))
    return kept + [label for label in expected if label not in kept]


def to_indices(ranked_labels: Sequence[str], window_labels: Sequence[str]) -> list[int]:
    position = {label: i for i, label in enumerate(window_labels)}
    return [position[label] for label in ranked_labels]


@dataclass
class WindowResult(Generic[T]):
    """The final order (best first), the number of window calls, passes run, and each call's (start, size)."""

    order: list[T]
    calls: int = 0
    passes: int = 0
    windows: list[tuple[int, int]] = field(default_factory=list)
    sorted_fully: bool = True


def window_plan(length: int, window: int, step: int, settled: int = 0) -> list[tuple[int, int]]:
    """One back-to-front pass over positions [settled, length): (start, size) of each window, last first."""
    if length - settled <= window:
        return [(settled, length - settled)] if length - settled >= 2 else []
    plan, end = [], length
    while True:
        start = max(settled, end - window)
        plan.append((start, end - start))
        if start == settled:
            return plan
        end -= step


async def sliding_windows(
    items: Sequence[T],
    rank_window: RankWindow,
    *,
    window: int,
    step: int | None = None,
    max_passes: int | None = None,
    top_n: int | None = None,
) -> WindowResult[T]:
    """Sort `items` (in their current order, which is the initial guess) with windows of `window` items moving
    `step` (default window // 2) from the back to the front, pass after pass. A pass settles its first
    window - step positions; later passes start below them. Stops when the whole list (or its `top_n` head) is
    settled, when a pass changes nothing (every overlapping window is already in order), or after
    `max_passes`. With len(items) <= window this is a single call."""
    if window < 2:
        raise ValueError("window must be at least 2")
    step = step or max(1, window // 2)
    if not 1 <= step < window:
        raise ValueError(f"step must be between 1 and window - 1 (window {window}, step {step})")
    order = list(items)
    result: WindowResult[T] = WindowResult(order=order)
    target = len(order) if top_n is None else min(top_n, len(order))
    settled = 0
    while settled < target:
        if max_passes is not None and result.passes >= max_passes:
            result.sorted_fully = False
            break
        plan = window_plan(len(order), window, step, settled)
        if not plan:
            break
        result.passes += 1
        changed = False
        for start, size in plan:
            chunk = order[start : start + size]
            permutation = await rank_window(chunk)
            if sorted(permutation) != list(range(size)):
                raise ValueError(f"rank_window returned {permutation}, not a permutation of 0..{size - 1}")
            reordered = [chunk[i] for i in permutation]
            changed = changed or permutation != list(range(size))
            order[start : start + size] = reordered
            result.calls += 1
            result.windows.append((start, size))
        if len(plan) == 1 and plan[0][0] == settled and plan[0][1] == len(order) - settled:
            break  # one window covered everything left: sorted
        if not changed:
            break
        settled += window - step
    result.order = order
    return result
