"""`bestofn build PROMPTS -o OUT --ray [ADDRESS]`: the single-process build's per-prompt pipeline, on Ray.

The driver (this module's `build_on_ray`, in the process that runs the command):
1. locks OUT (a folder, folder.py), checks the settings against the ones it was started with, and recovers it
   (a commit cut short is undone, a prompt committed twice is kept once);
2. joins or starts Ray (`connect`), reads the prompts with Ray Data (ray_inputs.py: every record numbered, bad
   ones reported "FILE:LINE: why"), and keeps the prompts that no manifest entry names yet;
3. runs them through `map_batches` on an actor pool. Each actor (`PromptWorker`) holds its backends, panel and
   call cache (one event loop, `concurrency` prompts in flight), runs `run_prompt` (runner.py, the single-process
   build's own function) on every prompt of a batch, and commits the batch as one part (journal, part file,
   manifest entry); a budget (--max-calls, --max-usd) is one Ledger actor that every worker's gate consults;
4. reads the actors' small status rows as they come (progress, failures), recovers OUT again and sums up.

Whatever dies (the driver, an actor, a node), the same command resumes: the manifest says which prompts are
finished, so none is done twice, and a finished build reruns with no model call. Ray retries the batch of a
dead actor; a worker skips the prompts that a manifest entry already names, and recovery keeps a prompt that
two entries name (a retried batch that had committed) in one part only.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
import uuid
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pyarrow as pa
import ray
import ray.data
from rich.console import Console

from bestofn.apps.build import ray_inputs
from bestofn.apps.build.budget import BudgetGate, Ledger, RemoteLedger
from bestofn.apps.build.estimate import Estimator
from bestofn.apps.build.folder import Folder
from bestofn.apps.build.report import BuildProgress, BuildSummary, prompt_info, summarise
from bestofn.apps.build.runner import BuildError, BuildOptions, Outcome, _settings, run_prompt, start_summary
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache, resolve_cache
from bestofn.config.panel import Panel, load_panel
from bestofn.errors import BestofnError, ConfigError
from bestofn.records import Spend
from bestofn.sinks.export import rows_for, sft_skip
from bestofn.sync import Portal

MAX_BATCH = 256  # prompts per part file at most (the default batch: about 4 per actor, for small builds)
STATUS = pa.schema([("prompt_id", pa.string()), ("line", pa.int64()), ("status", pa.string()),
                    ("reason", pa.string()), *[(k, pa.int64()) for k in ("calls", "cache_hits", "prompt_tokens",
                                                                          "completion_tokens", "unpriced_calls")],
                    ("usd", pa.float64())])
#: environment variables the actors get from the driver (a cluster's nodes have their own environment)
FORWARD = ("BESTOFN_",)
SECRET_WORDS = ("KEY", "TOKEN", "SECRET", "PASSWORD")


def connect(address: str | bool | None) -> None:
    """Join Ray: `True`/`"local"`/`""`: the cluster RAY_ADDRESS names, else a new one on this machine for this
    build, on loopback only (runner.py sets that before Ray is imported); `"auto"` (the cluster this machine is
    part of), `"HOST:PORT"`, `"ray://HOST:PORT"`: that cluster. Nothing when this process already joined one."""
    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    local = address in (True, "", "local")
    joined = os.environ.get("RAY_ADDRESS") if local else str(address)
    try:  # not Ray's own default: a stale /tmp/ray/ray_current_cluster would have it wait minutes for nothing
        extra = {} if joined else {"include_dashboard": False}
        ray.init(address=joined or "local", log_to_driver=False, **extra)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise ConfigError(f"--ray {address}: cannot join the Ray cluster ({exc})") from exc


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if k.startswith(FORWARD) and not any(w in k for w in SECRET_WORDS)}


def _check(opts: BuildOptions) -> None:
    for name in ("model", "judge_model"):
        if isinstance(getattr(opts, name), Backend):
            raise ConfigError(f"with ray=, {name} must be a spec string: each actor makes its own backends")
    if isinstance(opts.cache, Cache):
        raise ConfigError("with ray=, cache must be a folder, True or False: each actor opens its own cache")
    for name in ("ray_actors", "ray_batch_size"):
        if getattr(opts, name) is not None and getattr(opts, name) < 1:
            raise ConfigError(f"{name} must be at least 1, got {getattr(opts, name)}")


def _status(row: Any, status: str, reason: str | None = None, spend: Spend | None = None) -> dict[str, Any]:
    spend = spend or Spend()
    return {"prompt_id": row.id, "line": row.line, "status": status, "reason": reason,
            **{k: getattr(spend, k) for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens",
                                                "unpriced_calls", "usd")}}


class PromptWorker:
    """One actor of the pool: its backends (process-wide, bestofn.backends.load_backend), panel, cache and one
    event loop; `concurrency` prompts in flight over every batch it holds; each batch committed as one part."""

    def __init__(self, out: str, file_type: str, opts: BuildOptions, panel: Panel, margin: float,
                 ledger: Any = None):
        self.opts, self.panel, self.margin = opts, panel, margin
        self.folder = Folder(out, file_type)
        self.finished = self.folder.finished()
        self.name, self.parts = uuid.uuid4().hex[:12], 0  # a restarted actor is a new name: parts never collide
        self.cache = resolve_cache(opts.cache)
        self.gate = None
        if ledger is not None:
            self.gate = BudgetGate(RemoteLedger(ledger), Estimator(opts, panel), money=opts.max_usd is not None)
        self.portal = Portal("bestofn-ray-worker")
        self.slots: asyncio.Semaphore | None = None
        self.refused = False  # the budget is reached: start nothing more

    def __call__(self, batch: pa.Table) -> pa.Table:
        statuses = self.portal.run(self._batch(ray_inputs.prompt_rows(batch)))
        return pa.Table.from_pylist(statuses, schema=STATUS)

    async def _batch(self, rows: list[Any]) -> list[dict[str, Any]]:
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.opts.concurrency)
        self.finished |= self.folder.finished(fresh=False)  # what other attempts committed (a retried batch)
        statuses = [_status(r, "skipped") for r in rows if r.id in self.finished]
        todo = [r for r in rows if r.id not in self.finished]
        outcomes = await asyncio.gather(*(self._one(r) for r in todo))
        done = [o for o in outcomes if o is not None and o.record is not None]
        if done:
            name = f"{self.name}-{self.parts:06d}"
            self.parts += 1
            await asyncio.to_thread(self._commit, name, done)  # the loop goes on with the other batch's prompts
            self.finished |= {o.row.id for o in done}
        for row, o in zip(todo, outcomes):
            spend = o.selection.cost if o is not None and o.selection is not None else None
            if o is None:
                statuses.append(_status(row, "unstarted"))
            else:
                statuses.append(_status(row, "failed" if o.record is None else "done", o.reason, spend))
        return statuses

    async def _one(self, row: Any) -> Outcome | None:
        assert self.slots is not None
        async with self.slots:
            if self.refused:
                return None
            got: list[Outcome] = []

            async def one(r: Any) -> Any:
                got.append(await run_prompt(r, self.opts, self.panel, self.margin, self.cache))
                return got[0].selection

            if self.gate is None:
                await one(row)
            elif not await self.gate.run(row, one):
                self.refused = True
                return None
            return got[0]

    def _commit(self, name: str, done: list[Outcome]) -> None:
        fmt, min_score = self.opts.format, self.opts.min_score
        records = [o.record for o in done]
        rows = [r for rec in records for r in rows_for(fmt, rec, min_score=min_score)]
        prompts = {o.row.id: {"line": o.row.line, "reason": o.reason, "info": prompt_info(o.selection, o.reason),
                              "no_row": sft_skip(o.record, min_score) if fmt == "sft" else None} for o in done}
        self.folder.commit(name, records, rows, prompts)


def _bestofn_cause(exc: BaseException | None) -> BestofnError | None:
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, BestofnError):
            return exc
        exc = getattr(exc, "cause", None) or exc.__cause__ or exc.__context__
    return None


def build_on_ray(prompts: str | Path, out: str | Path, options: dict[str, Any], *, console: Console,
                 progress: bool = True) -> BuildSummary:
    """`bestofn build --ray`: see the module's docstring. Raises BuildError when --on-error stop stopped it."""
    opts = BuildOptions(**options)
    opts.check()
    _check(opts)
    file_type = opts.file_type or "parquet"
    panel = opts.panel if isinstance(opts.panel, Panel) else load_panel(opts.panel)
    margin = panel.pair_margin if opts.pair_margin is None else opts.pair_margin
    if opts.max_usd is not None:
        Estimator(opts, panel).require_prices()
    settings = {**_settings(opts, panel), "format": opts.format, "file_type": file_type, "min_score": opts.min_score}
    folder = Folder(out, file_type, lock=True)
    started = time.perf_counter()
    try:
        folder.check_settings(settings)
        entries = folder.recover()
        connect(opts.ray)
        ray.data.DataContext.get_current().enable_progress_bars = False  # our own progress line and summary
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        ds = ray_inputs.read(prompts, opts.columns)
        scan = ray_inputs.scan(ds)
        summary = start_summary(out, opts, scan.records, len(scan.todo), scan.issues)
        finished = {pid for e in entries.values() for pid in e["prompts"]}
        wanted = set(scan.todo.values())
        summary.done_before = len(finished & wanted)
        pending = {k for k, pid in scan.todo.items() if pid not in finished}
        accounted: set[str] = set()  # the prompts this run reported failed or left unstarted (a budget)
        if pending:
            accounted = _run(ds, pending, out, file_type, opts, panel, margin, summary, console, progress)
        entries = folder.recover()
        summary.rows = sum(e["rows"] for e in entries.values())
        done = [p for e in entries.values() for pid, p in e["prompts"].items() if pid in wanted]
        summary.done_now = len(done) - summary.done_before  # what the manifest says, whatever Ray retried
        finished = {pid for e in entries.values() for pid in e["prompts"]}
        lost = [] if summary.stopped else sorted({scan.todo[k] for k in pending} - finished - accounted)
        for pid in lost:  # neither finished nor failed: the next run does them
            summary.failed += 1
            summary.failures.append(f"{pid}: not finished (its actor was lost); run the same command again")
        infos = [p["info"] for p in done]
        if opts.format == "sft":
            infos = [{**info, "reason": None} for info in infos]
            for p in done:
                if p["no_row"]:
                    key = f"no row: {p['no_row']}"
                    summary.skipped[key] = summary.skipped.get(key, 0) + 1
        summarise(summary, infos)
        summary.cost.seconds = round(time.perf_counter() - started, 3)
    finally:
        folder.close()
    if summary.stopped:
        raise BuildError(summary.stopped, summary)
    return summary


def _run(ds: Any, pending: set[tuple[str, int]], out: str | Path, file_type: str, opts: BuildOptions, panel: Panel,
         margin: float, summary: BuildSummary, console: Console, progress: bool) -> set[str]:
    actors = opts.ray_actors or max(1, int(ray.cluster_resources().get("CPU", 1)))
    batch = opts.ray_batch_size or max(1, min(MAX_BATCH, math.ceil(len(pending) / (actors * 4))))
    todo = ds.map_batches(partial(ray_inputs.select, ray.put(frozenset(pending))), batch_format="pyarrow")
    # materialised before the pool starts: the pool may take every CPU, and a read or split task then waits forever
    todo = todo.repartition(target_num_rows_per_block=batch).materialize()
    ledger = None
    if opts.max_calls is not None or opts.max_usd is not None:
        ledger = ray.remote(Ledger).options(num_cpus=0).remote(opts.max_calls, opts.max_usd)
    statuses = todo.map_batches(
        PromptWorker, batch_size=batch, batch_format="pyarrow", num_cpus=1,
        fn_constructor_kwargs=dict(out=str(Path(out).resolve()), file_type=file_type, opts=opts, panel=panel,
                                   margin=margin, ledger=ledger),
        compute=ray.data.ActorPoolStrategy(size=actors, max_concurrent_calls_per_actor=2,
                                           enable_true_multi_threading=True),
        runtime_env={"env_vars": _env()},
    )
    total = summary.prompts
    meter = BuildProgress(console, total=total, done=total - len(pending), enabled=progress and console.is_terminal)
    unstarted, accounted = 0, set()
    try:
        with meter:
            for s in statuses.iter_rows():
                spend = Spend(**{k: s[k] for k in ("calls", "cache_hits", "prompt_tokens", "completion_tokens",
                                                   "unpriced_calls", "usd")})
                if s["status"] in ("done", "skipped"):  # skipped: a retried batch's prompt that had committed
                    meter.finished(SimpleNamespace(cost=spend))
                elif s["status"] == "failed":
                    accounted.add(s["prompt_id"])
                    summary.failed += 1
                    summary.failures.append(f"{s['prompt_id']} (line {s['line']}): {s['reason']}")
                    meter.finished(SimpleNamespace(cost=spend), failed=True)
                    if opts.on_error == "stop":
                        summary.stopped = f"prompt {s['prompt_id']} (line {s['line']}) failed: {s['reason']}"
                        break
                elif s["status"] == "unstarted":
                    accounted.add(s["prompt_id"])
                    unstarted += 1
    except Exception as exc:  # a worker's ConfigError (a bad model spec...) comes back wrapped by Ray
        cause = _bestofn_cause(exc)
        if cause is not None:
            raise cause from None
        raise
    finally:
        summary.done_now = meter.done_now
        summary.cost = meter.cost
    if unstarted and ledger is not None:
        reason = ray.get(ledger.stop_reason.remote())
        summary.budget_stop = (f"{reason}; {unstarted} of {total} prompts not started: "
                               "run the same command again to go on for as much again")
    return accounted


__all__ = ["PromptWorker", "build_on_ray", "connect"]
