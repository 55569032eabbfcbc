"""What a build tells its user: a live progress line while it runs and a summary when it ends."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from bestofn.backends.meter import describe_cost
from bestofn.records import Selection, Spend


class RunCost(Spend):
    """A build run's Spend (every selection's cost added up) and how long the run took."""

    model_config = ConfigDict(frozen=False)  # the runner sets `seconds` when the run ends

    seconds: float = 0.0


class BuildSummary(BaseModel):
    out: str
    format: str
    strategy: str
    input_records: int = 0
    prompts: int = 0  # valid prompts in the input
    done_before: int = 0  # finished by earlier runs
    done_now: int = 0  # finished by this run
    failed: int = 0  # failed in this run: retried by the next one
    stopped: str | None = None  # why --on-error stop ended the run early
    budget_stop: str | None = None  # why --max-calls / --max-usd ended this run early (the rerun goes on)
    max_calls: int | None = None  # this invocation's budgets
    max_usd: float | None = None
    rows: int = 0  # rows in the output file
    pairs: int = 0  # preference pairs over every finished prompt
    mean_margin: float | None = None
    skipped: dict[str, int] = Field(default_factory=dict)  # reason -> prompts or input records
    input_issues: list[str] = Field(default_factory=list)
    failures: list[str] = Field(default_factory=list)
    judge_agreement: float | None = None  # judges ordering a candidate pair the same way (pairwise, no ties)
    judge_vs_pairs: dict[str, float] = Field(default_factory=dict)  # per judge: scores chosen above rejected
    cost: RunCost = Field(default_factory=RunCost)  # this run's calls (a budget counts these)
    build_cost: Spend = Field(default_factory=Spend)  # the finished prompts' calls, over every run of this build


def prompt_info(selection: Selection, reason: str | None) -> dict[str, Any]:
    """Small per-prompt figures kept in the journal, so a summary covers earlier runs without re-reading."""
    table: dict[str, dict[str, float]] = {}
    for v in selection.verdicts:
        if v.status == "ok" and v.score is not None and len(v.candidate_ids) == 1:
            table.setdefault(v.judge, {})[v.candidate_ids[0]] = v.score
    judges = sorted(table)
    concordant = discordant = 0
    for i, j in enumerate(judges):
        for k in judges[i + 1 :]:
            common = sorted(set(table[j]) & set(table[k]))
            for x, a in enumerate(common):
                for b in common[x + 1 :]:
                    dj, dk = table[j][a] - table[j][b], table[k][a] - table[k][b]
                    if dj and dk:
                        if (dj > 0) == (dk > 0):
                            concordant += 1
                        else:
                            discordant += 1
    versus: dict[str, list[int]] = {}
    for p in selection.pairs:
        for j in judges:
            hi, lo = table[j].get(p.chosen_id), table[j].get(p.rejected_id)
            if hi is not None and lo is not None:
                counts = versus.setdefault(j, [0, 0, 0])  # chosen higher, lower, tie
                counts[0 if hi > lo else 1 if hi < lo else 2] += 1
    return {
        "pairs": len(selection.pairs),
        "margins": [p.margin for p in selection.pairs],
        "reason": reason,
        "concordant": concordant,
        "discordant": discordant,
        "versus": versus,
        "cost": Spend(**{k: getattr(selection.cost, k) for k in Spend.model_fields}).model_dump(),
    }


def summarise(summary: BuildSummary, infos: list[dict[str, Any]]) -> BuildSummary:
    """Fill in the dataset-wide figures from every finished prompt's info."""
    margins = [m for info in infos for m in info.get("margins", [])]
    summary.pairs = sum(info.get("pairs", 0) for info in infos)
    summary.mean_margin = round(statistics.fmean(margins), 4) if margins else None
    reasons = Counter(info["reason"] for info in infos if info.get("reason"))
    for reason, count in reasons.items():
        summary.skipped[f"no pair: {reason}"] = count
    agree = sum(info.get("concordant", 0) for info in infos)
    total = agree + sum(info.get("discordant", 0) for info in infos)
    summary.judge_agreement = round(agree / total, 4) if total else None
    versus: dict[str, list[int]] = {}
    for info in infos:
        for judge, counts in info.get("versus", {}).items():
            acc = versus.setdefault(judge, [0, 0, 0])
            for i in range(3):
                acc[i] += counts[i]
    summary.judge_vs_pairs = {j: round(c[0] / (c[0] + c[1] + c[2]), 4) for j, c in sorted(versus.items()) if sum(c)}
    summary.build_cost = sum((Spend(**info["cost"]) for info in infos if "cost" in info), Spend())
    return summary


class BuildProgress:
    """prompts done / total, rate, ETA, calls, cache hits, tokens, cost, failures (stderr; off when not a tty)."""

    def __init__(self, console: Console, total: int, done: int, enabled: bool = True):
        self.spend = Spend()
        self.failures = 0
        self.started = time.perf_counter()
        self.done_now = 0
        self.bar = Progress(
            TextColumn("prompts"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[stats]}"),
            console=console, disable=not enabled, transient=False,
        )
        self.task = self.bar.add_task("build", total=total, completed=done, rate="", stats="")

    def __enter__(self) -> BuildProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.bar.stop()

    @property
    def cost(self) -> RunCost:
        return RunCost(**self.spend.model_dump())

    def finished(self, selection: Selection | None, failed: bool = False) -> None:
        if selection is not None:
            self.spend += selection.cost
        if failed:
            self.failures += 1
        else:
            self.done_now += 1
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        c = self.spend
        stats = (f"calls {c.calls} (hits {c.cache_hits}) tokens {c.tokens} {describe_cost(c)}"
                 f" failures {self.failures}")
        self.bar.update(self.task, advance=0 if failed else 1, rate=f"{self.done_now / elapsed * 60:.1f}/min",
                        stats=stats)


def print_summary(console: Console, s: BuildSummary) -> None:
    table = Table(title=f"build {s.out} ({s.format}, {s.strategy})", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    table.add_row("prompts", f"{s.done_before + s.done_now} of {s.prompts} done ({s.done_now} now, "
                  f"{s.done_before} before); {s.failed} failed")
    table.add_row("rows written", str(s.rows))
    table.add_row("pairs", f"{s.pairs}" + (f", mean margin {s.mean_margin:.3f}" if s.mean_margin is not None else ""))
    for reason, count in sorted(s.skipped.items(), key=lambda kv: -kv[1]):
        table.add_row("skipped", f"{count}: {reason}")
    if s.judge_agreement is not None:
        table.add_row("judge agreement", f"{s.judge_agreement:.1%} of candidate pairs ordered alike by two judges")
    if s.judge_vs_pairs:
        table.add_row("judges vs pairs", ", ".join(f"{j} {a:.0%}" for j, a in s.judge_vs_pairs.items()))
    c = s.cost
    table.add_row("cost (this run)", f"{c.calls} calls, {c.cache_hits} cache hits, "
                  f"{c.prompt_tokens}+{c.completion_tokens} tokens, {describe_cost(c)}, "
                  f"{c.seconds:.1f}s")
    b = s.build_cost
    table.add_row("cost (build)", f"{b.calls} calls, {b.cache_hits} cache hits, {b.prompt_tokens}+"
                  f"{b.completion_tokens} tokens, {describe_cost(b)} (the finished prompts, over every run)")
    if s.max_calls is not None or s.max_usd is not None:
        limits = " and ".join(x for x in (s.max_calls is not None and f"--max-calls {s.max_calls}",
                                          s.max_usd is not None and f"--max-usd {s.max_usd:g}") if x)
        table.add_row("budget (this run)", s.budget_stop or f"{limits}: not reached")
    console.print(table)
    for line in s.input_issues[:10]:
        console.print(f"input: {line}", markup=False, highlight=False)
    if len(s.input_issues) > 10:
        console.print(f"input: ... and {len(s.input_issues) - 10} more")
    for line in s.failures[:10]:
        console.print(f"failed: {line}", markup=False, highlight=False)
    if s.stopped:
        console.print(f"stopped: {s.stopped}", markup=False, highlight=False)
