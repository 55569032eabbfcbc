"""`bestofn build`: prompts in, preference data out; resumable and exactly-once.

For each prompt: generate n candidates, judge them with the panel, aggregate, make pairs (bestofn.select's
pipeline, through the shared cache), then commit the prompt's whole result to the journal in one transaction
and append its rows to the output. Prompts run `concurrency` at a time. A rerun of the same command skips
finished prompts (a finished build makes no model call), retries failed ones, and rewrites the output from the
journal, so whatever moment a build was killed at, no row is lost or written twice (see journal.py).

`run_prompt` is the per-prompt pipeline; this module schedules it in one process, and with `ray=` each actor
of a Ray cluster runs it (ray.py), writing a folder of part files (folder.py).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from rich.console import Console

from bestofn.backends.base import Backend
from bestofn.apps.build.budget import BudgetGate, check_limits, make_gate
from bestofn.apps.build.estimate import BuildEstimate, estimate
from bestofn.apps.build.inputs import Columns, PromptRow, read_prompts
from bestofn.apps.build.journal import Journal
from bestofn.apps.build.report import BuildProgress, BuildSummary, print_summary, prompt_info, summarise
from bestofn.backends.cache import Cache, resolve_cache
from bestofn.errors import BestofnError, ConfigError, MissingExtraError
from bestofn.sinks import jsonl
from bestofn.sinks.export import FORMATS, check_output, rows_for, sft_skip, write_rows
from bestofn.ranking.pairs import STRATEGIES
from bestofn.config.panel import Panel, load_panel
from bestofn.records import Selection
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, aselect, check_n
from bestofn.sync import run_sync
from bestofn.config.templates import load_template

DEFAULT_N = 8
DEFAULT_CONCURRENCY = 4


class BuildError(BestofnError):
    """`--on-error stop` ended the build early; the finished prompts are in the output and the journal."""

    def __init__(self, message: str, summary: BuildSummary):
        super().__init__(message)
        self.summary = summary


@dataclass
class BuildOptions:
    format: str = "trl-conversational"
    min_score: float = 0.0  # sft: the best's normalised aggregate score a prompt needs to give a row
    strategy: str = "best-worst"
    n: int = DEFAULT_N
    model: str | Backend = "local"
    judge_model: str | Backend | None = None
    panel: str | Path | Panel = "default"
    base_url: str | None = None
    seed: int = 0
    max_tokens: int = DEFAULT_MAX_TOKENS
    judge_max_tokens: int | None = None
    temperature: float = DEFAULT_TEMPERATURE
    pair_margin: float | None = None
    concurrency: int = DEFAULT_CONCURRENCY
    on_error: Literal["skip", "stop"] = "skip"
    cache: Cache | str | Path | bool | None = None  # None/True: the default cache; False: --no-cache
    columns: Columns = field(default_factory=Columns)
    dry_run: bool = False  # read and check the inputs, print the calls, tokens and money: call nothing (estimate.py)
    max_usd: float | None = None  # budgets of this invocation (budget.py); a rerun goes on for as much again
    max_calls: int | None = None
    ray: str | bool | None = None  # None: this process; True or "local": a local Ray; "auto", "ray://...": a cluster
    file_type: str | None = None  # with ray: the parts' type, parquet (the default) or jsonl
    ray_actors: int | None = None  # with ray: actors in the pool (default: one per CPU of the cluster)
    ray_batch_size: int | None = None  # with ray: prompts per part file (default: from the prompts and actors)

    def check(self) -> None:
        check_n(self.n)
        check_limits(self.max_calls, self.max_usd)
        if self.strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {self.strategy!r}; choose from {', '.join(STRATEGIES)}")
        if self.on_error not in ("skip", "stop"):
            raise ConfigError(f"--on-error must be skip or stop, got {self.on_error!r}")
        if self.concurrency < 1:
            raise ConfigError(f"--concurrency must be at least 1, got {self.concurrency}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ConfigError(f"--min-score must be between 0 and 1 (a normalised score), got {self.min_score}")
        if self.format not in FORMATS:
            raise ConfigError(f"unknown format {self.format!r}; choose from {', '.join(FORMATS)}")
        if self.ray is None and self.file_type is not None:
            raise ConfigError("--file-type goes with --ray (without it, the output's suffix picks the file type)")


def _settings(opts: BuildOptions, panel: Panel) -> dict[str, Any]:
    """What decides a build's rows (not where or how fast it runs): a resumed build must match them."""
    templates = {}
    for j in panel.judges:
        if j.rubric:
            try:
                templates[j.name] = load_template(j.rubric).sha256
            except ConfigError:
                templates[j.name] = None
    blob = json.dumps(panel.model_dump(mode="json", exclude={"source"}), sort_keys=True)
    return {
        "n": opts.n, "model": _spec(opts.model), "judge_model": _spec(opts.judge_model), "panel": panel.name,
        "panel_sha256": hashlib.sha256(blob.encode()).hexdigest(), "templates": templates, "seed": opts.seed,
        "max_tokens": opts.max_tokens, "judge_max_tokens": opts.judge_max_tokens, "temperature": opts.temperature,
        "strategy": opts.strategy, "pair_margin": panel.pair_margin if opts.pair_margin is None else opts.pair_margin,
    }


def _spec(model: str | Backend | None) -> str | None:
    """A model as the journal keys it: a Backend instance by the spec it stands for."""
    return model.spec if isinstance(model, Backend) else model


def _no_pair_reason(selection: Selection, never_chosen: set[str], margin: float) -> str:
    unique = [c for c in selection.candidates if c.duplicate_of is None]
    if len(unique) < 2:
        return "all candidates identical"
    if len(selection.ranking) < 2:
        return "fewer than 2 rankable candidates (judge quorum not met)"
    if selection.ranking[0] in never_chosen:
        return "best candidate vetoed or unchecked by the safety judge"
    return f"no pair with a margin of at least {margin:g}"


@dataclass
class Outcome:
    """One prompt's result: its journal record (None: it failed, and `reason` says why) and its Selection."""

    row: PromptRow
    selection: Selection | None
    record: dict[str, Any] | None
    reason: str | None  # done: why it gave no pair (None: it gave pairs); failed: what failed


def start_summary(out: Path, opts: BuildOptions, records: int, prompts: int, issues: list[Any]) -> BuildSummary:
    """What both schedulers do with the input rows' issues before any call: with `--on-error stop` the first one
    is the error (FILE:LINE: why); otherwise each is counted in the summary as a skipped row."""
    if issues and opts.on_error == "stop":
        more = f" (and {len(issues) - 1} more)" if len(issues) > 1 else ""
        raise ConfigError(f"{issues[0]}{more}")
    summary = BuildSummary(out=str(out), format=opts.format, strategy=opts.strategy, input_records=records,
                           prompts=prompts, input_issues=[str(i) for i in issues], max_calls=opts.max_calls,
                           max_usd=opts.max_usd)
    for issue in issues:
        key = "bad input: " + ("duplicate" if issue.reason.startswith("duplicate") else "invalid record")
        summary.skipped[key] = summary.skipped.get(key, 0) + 1
    return summary


async def run_prompt(row: PromptRow, opts: BuildOptions, panel: Panel, margin: float, cache: Cache | None) -> Outcome:
    """The per-prompt pipeline, one implementation for both schedulers (this process, Ray's actors): generate,
    judge, aggregate and pair (aselect), then the record the journal keeps. A ConfigError (a bad model spec or
    panel fails every prompt) is raised; any other failure is the Outcome's reason, retried by the next run."""
    try:
        selection = await aselect(
            row.messages, n=opts.n, model=opts.model, judge_model=opts.judge_model, panel=panel,
            base_url=opts.base_url, seed=opts.seed, max_tokens=opts.max_tokens,
            judge_max_tokens=opts.judge_max_tokens, temperature=opts.temperature, reference=row.reference,
            constraints=row.constraints, strategy=opts.strategy, pair_margin=margin,
            cache=False if cache is None else cache,
        )
    except ConfigError:
        raise
    except BestofnError as exc:
        return Outcome(row, None, None, str(exc))
    errors = [v for v in selection.verdicts if v.status == "error"]
    if errors:  # a backend failed mid-judging: retry the prompt later rather than keep a partial verdict set
        return Outcome(row, selection, None, f"judge {errors[0].judge}: {errors[0].reason}")
    pairs = selection.pairs  # aselect never makes a vetoed or safety-flagged answer the chosen side
    reason = None if pairs else _no_pair_reason(selection, selection.unsafe_ids(), margin)
    record = {
        "prompt_id": row.id, "line": row.line, "metadata": row.metadata, "generator": _spec(opts.model),
        "seed": opts.seed, "reason": reason, "selection": selection.model_dump(mode="json"),
    }
    return Outcome(row, selection, record, reason)


class _Writer:
    """Journal commits and output appends, on one thread, in order: commit first, then append."""

    def __init__(self, journal: Journal, out: Path, fmt: str, seen: set[str], min_score: float = 0.0):
        self.journal, self.out, self.fmt, self.seen, self.min_score = journal, out, fmt, seen, min_score
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bestofn-journal")
        self.append = out.suffix.lower() == ".jsonl"

    def _commit(self, row: PromptRow, record: dict[str, Any], info: dict[str, Any], reason: str | None) -> None:
        self.journal.commit(row.id, row.line, record=record, info=info, reason=reason)
        if self.append:
            lines = []
            for r in rows_for(self.fmt, record, min_score=self.min_score):
                if r["id"] not in self.seen:
                    self.seen.add(r["id"])
                    lines.append(r)
            jsonl.append(self.out, lines)

    async def commit(self, *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self._commit, *args)

    async def fail(self, row: PromptRow, reason: str) -> None:
        await asyncio.get_running_loop().run_in_executor(self.pool, self.journal.fail, row.id, row.line, reason)

    def close(self) -> None:
        self.pool.shutdown(wait=True)


def rewrite_output(journal: Journal, out: Path, fmt: str, min_score: float = 0.0) -> tuple[int, set[str]]:
    """The output file from the journal, in input order, each row key once (atomic replace)."""
    seen: set[str] = set()

    def rows():
        for record in journal.records():
            for r in rows_for(fmt, record, min_score=min_score):
                if r["id"] not in seen:
                    seen.add(r["id"])
                    yield r

    count = write_rows(out, rows())
    return count, seen


async def abuild(prompts: str | Path, out: str | Path, *, console: Console | None = None, progress: bool = True,
                 **options: Any) -> BuildSummary | BuildEstimate:
    """Build a preference dataset from a prompts file (async core of `bestofn build`); with `dry_run=True`,
    the BuildEstimate of its calls, tokens and money instead, with no model called and nothing written."""
    opts = BuildOptions(**options)
    opts.check()
    if opts.ray is not None and not opts.dry_run:  # the same pipeline on a Ray cluster, into a folder (ray.py)
        return await asyncio.to_thread(_ray_build, prompts, out, options, console, progress)
    out = Path(out) if opts.ray is not None else check_output(out, opts.format)
    console = console or Console(stderr=True)
    panel = opts.panel if isinstance(opts.panel, Panel) else load_panel(opts.panel)
    margin = panel.pair_margin if opts.pair_margin is None else opts.pair_margin
    inputs = read_prompts(prompts, opts.columns)
    summary = start_summary(out, opts, inputs.records, len(inputs.rows), inputs.issues)
    if opts.dry_run:
        return await estimate(prompts, out, inputs, opts, panel)
    gate = make_gate(opts, panel)  # None without a budget; --max-usd with an unpriced model: a ConfigError here

    journal = Journal(out)
    started = time.perf_counter()
    try:
        journal.check_settings(_settings(opts, panel))
        finished = journal.finished()
        wanted = {r.id for r in inputs.rows}
        summary.done_before = len(finished & wanted)
        pending = [r for r in inputs.rows if r.id not in finished]
        seen: set[str] = set()
        if out.suffix.lower() == ".jsonl":  # repair what a killed run left behind (Parquet: written at the end)
            _, seen = rewrite_output(journal, out, opts.format, opts.min_score)
        if pending:
            cache = resolve_cache(opts.cache)
            await _run(pending, opts, panel, margin, cache, journal, out, seen, summary, console, progress, gate)
        count, _ = rewrite_output(journal, out, opts.format, opts.min_score)
        summary.rows = count
        summary.cost.seconds = round(time.perf_counter() - started, 3)
        infos = [info for pid, status, _, info in journal.infos() if status == "done" and pid in wanted]
        if opts.format == "sft":  # its rows are not pairs: why a prompt gives none, under this run's --min-score
            infos = [{**info, "reason": None} for info in infos]
            skips = Counter(sft_skip(r, opts.min_score) for r in journal.records() if r["prompt_id"] in wanted)
            summary.skipped.update({f"no row: {why}": k for why, k in skips.items() if why})
        summarise(summary, infos)
    finally:
        journal.close()
    if summary.stopped:
        raise BuildError(summary.stopped, summary)
    return summary


async def _run(pending: list[PromptRow], opts: BuildOptions, panel: Panel, margin: float, cache: Cache | None,
               journal: Journal, out: Path, seen: set[str], summary: BuildSummary, console: Console,
               progress: bool, gate: BudgetGate | None = None) -> None:
    writer = _Writer(journal, out, opts.format, seen, opts.min_score)
    queue: asyncio.Queue[PromptRow] = asyncio.Queue()
    for row in pending:
        queue.put_nowait(row)
    total = summary.prompts
    meter = BuildProgress(console, total=total, done=total - len(pending), enabled=progress and console.is_terminal)

    commits: set[asyncio.Future[None]] = set()

    async def one(row: PromptRow) -> Selection | None:
        done = await run_prompt(row, opts, panel, margin, cache)
        if done.record is None:
            return await failed(row, done.reason or "failed", done.selection)
        # The commit (fsync) runs on the writer's thread while this worker takes the next prompt.
        task = asyncio.ensure_future(commit(row, done.record, done.reason, done.selection))
        commits.add(task)
        task.add_done_callback(commits.discard)
        return done.selection

    async def commit(row: PromptRow, record: dict[str, Any], reason: str | None, selection: Selection) -> None:
        await writer.commit(row, record, prompt_info(selection, reason), reason)
        meter.finished(selection)

    async def failed(row: PromptRow, reason: str, selection: Selection | None) -> Selection | None:
        summary.failed += 1
        summary.failures.append(f"{row.id} (line {row.line}): {reason}")
        await writer.fail(row, reason)
        meter.finished(selection, failed=True)
        if opts.on_error == "stop" and summary.stopped is None:
            summary.stopped = f"prompt {row.id} (line {row.line}) failed: {reason}"
        return selection

    async def worker() -> None:
        while summary.stopped is None:
            try:
                row = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            if gate is None:
                await one(row)
            elif not await gate.run(row, one):  # the budget is reached: the row is left to the next run
                queue.put_nowait(row)
                return

    try:
        with meter:
            workers = [asyncio.ensure_future(worker()) for _ in range(min(opts.concurrency, len(pending)))]
            try:
                await asyncio.gather(*workers)
                if gate is not None and summary.stopped is None and not queue.empty():
                    summary.budget_stop = (f"{await gate.stop_reason()}; {queue.qsize()} of {total} prompts not started: "
                                           "run the same command again to go on for as much again")
            except BaseException:
                for w in workers:
                    w.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                raise
            finally:
                await asyncio.gather(*list(commits))  # the writer's thread finishes them even when cancelled
    finally:
        writer.close()
        summary.done_now = meter.done_now
        summary.cost = meter.cost


def build(prompts: str | Path, out: str | Path, **options: Any) -> BuildSummary | BuildEstimate:
    """Sync wrapper of `abuild` (same keyword arguments)."""
    if options.get("ray") is not None and not options.get("dry_run"):
        return _ray_build(prompts, out, options, options.pop("console", None), options.pop("progress", True))
    return run_sync(abuild(prompts, out, **options))


def _ray_build(prompts: str | Path, out: str | Path, options: dict[str, Any], console: Console | None,
               progress: bool) -> BuildSummary:
    if options["ray"] in (True, "", "local") and "ray" not in sys.modules:  # Ray reads it when imported:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # a local Ray binds loopback only
    try:
        from bestofn.apps.build.ray import build_on_ray
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == "ray":
            raise MissingExtraError("bestofn build --ray", "ray", "ray[data]") from exc
        raise
    return build_on_ray(prompts, out, options, console=console or Console(stderr=True), progress=progress)


__all__ = ["BuildError", "BuildOptions", "BuildSummary", "abuild", "build", "print_summary", "rewrite_output"]
