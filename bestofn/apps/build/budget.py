"""`--max-calls N` and `--max-usd X`: a budget for one invocation of `bestofn build`.

Before a prompt starts, the build asks its budget. The budget holds the prompt's estimated calls and money
(estimate.py: n generations and each judge's calls, priced at their token limits) while it runs and, when it
ends, swaps them for what it really spent (its Selection's cost, the Meter's count: cache hits are free). A
prompt starts while this run's spend plus what the prompts in flight hold is under the budget; once it is not,
no prompt starts, the ones in flight finish and are committed, and the run ends with `budget_stop` set in its
summary (`bestofn build` exits 3). So a run spends at least the budget (or finishes the build) and at most about
one prompt's worth more. The budget counts this invocation only: the same command again goes on for another
budget's worth, from the journal, with nothing done twice.

`--max-usd` needs a price for every model the build calls (bestofn.backends.pricing: `set_price`,
`BESTOFN_PRICES`, or the bundled price data); a model without one is an error naming it: use `--max-calls`.

Sharing: `Ledger` is plain state with plain methods, so one instance can live in a Ray actor that every worker
consults (`RemoteLedger(ray.remote(Ledger).remote(max_calls, max_usd))`); a single-process build holds it
directly. `BudgetGate` is what the per-prompt pipeline calls, whichever ledger it holds.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from bestofn.apps.build.estimate import Estimator
from bestofn.apps.build.inputs import PromptRow
from bestofn.errors import ConfigError
from bestofn.records import Selection, Spend

if TYPE_CHECKING:
    from bestofn.apps.build.runner import BuildOptions
    from bestofn.config.panel import Panel

EXIT_BUDGET = 3  # `bestofn build`'s exit status when a budget stopped it (1: failed prompts, 2: an error)

Ticket = tuple[int, float]  # what a started prompt holds: (calls, dollars)


def check_limits(max_calls: int | None, max_usd: float | None) -> None:
    if max_calls is not None and max_calls < 1:
        raise ConfigError(f"--max-calls must be at least 1, got {max_calls}")
    if max_usd is not None and not max_usd > 0:
        raise ConfigError(f"--max-usd must be more than 0, got {max_usd}")


class Ledger:
    """The budget's count: its limits, this run's spend, and what the prompts in flight hold."""

    def __init__(self, max_calls: int | None = None, max_usd: float | None = None):
        check_limits(max_calls, max_usd)
        self.max_calls, self.max_usd = max_calls, max_usd
        self.spent = Spend()
        self.held_calls, self.held_usd, self.in_flight, self.refused = 0, 0.0, 0, 0

    def _reached(self) -> bool:
        if self.max_calls is not None and self.spent.calls + self.held_calls >= self.max_calls:
            return True
        return self.max_usd is not None and (self.spent.usd or 0.0) + self.held_usd >= self.max_usd

    def take(self, calls: int, usd: float) -> bool:
        """Hold (calls, usd) for a prompt about to start; False (hold nothing) when the budget is reached."""
        if self._reached():
            self.refused += 1
            return False
        self.held_calls, self.held_usd, self.in_flight = self.held_calls + calls, self.held_usd + usd, self.in_flight + 1
        return True

    def settle(self, calls: int, usd: float, spend: Spend | None) -> None:
        """A prompt ended: release what it held and count what it spent (None: it failed with nothing counted)."""
        self.held_calls, self.held_usd, self.in_flight = self.held_calls - calls, self.held_usd - usd, self.in_flight - 1
        if spend is not None:
            self.spent += Spend(**{k: getattr(spend, k) for k in Spend.model_fields})

    def stop_reason(self) -> str:
        """What the budget came to, for the message of a run it stopped."""
        spent = self.spent
        if self.max_calls is not None and (self.max_usd is None or spent.calls >= self.max_calls):
            return f"--max-calls {self.max_calls} reached: this run made {spent.calls} calls"
        return f"--max-usd {self.max_usd:g} reached: this run spent ${spent.usd or 0.0:.6f} ({spent.calls} calls)"


class RemoteLedger:
    """A Ledger in a Ray actor, consulted by every worker: `RemoteLedger(ray.remote(Ledger).remote(...))`.
    Each method returns the actor call's ObjectRef, which the gate awaits (no Ray import needed here)."""

    def __init__(self, handle: Any):
        self.handle = handle

    def take(self, calls: int, usd: float) -> Any:
        return self.handle.take.remote(calls, usd)

    def settle(self, calls: int, usd: float, spend: Spend | None) -> Any:
        return self.handle.settle.remote(calls, usd, spend)

    def stop_reason(self) -> Any:
        return self.handle.stop_reason.remote()


async def _value(result: Any) -> Any:
    return await result if inspect.isawaitable(result) else result


class BudgetGate:
    """What the per-prompt pipeline calls: `await gate.run(row, one)` runs `one(row)` if the budget lets it start."""

    def __init__(self, ledger: Ledger | RemoteLedger, estimator: Estimator, *, money: bool):
        self.ledger, self.estimator = ledger, estimator
        self.money = money  # --max-usd: hold each prompt's estimated dollars too (its prompts rendered, counted)

    async def run(self, row: PromptRow, one: Callable[[PromptRow], Awaitable[Selection | None]]) -> bool:
        """Run one prompt under the budget: False (nothing run) when the budget is reached; the caller puts the
        row back (the next run does it) and starts no more prompts."""
        ticket: Ticket = await self.estimator.reserve(row, money=self.money)
        if not await _value(self.ledger.take(*ticket)):
            return False
        selection = None
        try:
            selection = await one(row)
        finally:
            await _value(self.ledger.settle(*ticket, selection.cost if selection is not None else None))
        return True

    async def stop_reason(self) -> str:
        return await _value(self.ledger.stop_reason())


def make_gate(opts: BuildOptions, panel: Panel) -> BudgetGate | None:
    """The gate of a single-process build (None without a budget). `--max-usd` with a model the price table
    does not know is a ConfigError naming it, raised before any call."""
    check_limits(opts.max_calls, opts.max_usd)
    if opts.max_calls is None and opts.max_usd is None:
        return None
    estimator = Estimator(opts, panel)
    if opts.max_usd is not None:
        estimator.require_prices()
    return BudgetGate(Ledger(opts.max_calls, opts.max_usd), estimator, money=opts.max_usd is not None)


__all__ = ["EXIT_BUDGET", "BudgetGate", "Ledger", "RemoteLedger", "check_limits", "make_gate"]
