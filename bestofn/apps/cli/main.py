"""The `bestofn` command. Errors are one line on stderr with a non-zero exit (a traceback with --debug);
with --json, stdout holds nothing but the JSON."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from bestofn.apps.cli.ab import ab
from bestofn.apps.cli.build import build, ray_flag
from bestofn.apps.cli.doctor import doctor
from bestofn.apps.cli.options import (
    BaseUrl, Debug, JudgeMaxTokens, JudgeModel, Json, Log, MaxTokens, Model, N, NoCache, PairMargin, Panel, Seed,
    Temperature, with_help,
)
from bestofn.apps.cli.rerank import rerank
from bestofn.apps.cli.serve import serve
from bestofn.errors import BestofnError
from bestofn.config.panel import builtin_panels, load_panel
from bestofn.records import Selection
from bestofn.config.resources import resolve
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, select

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Best-of-n answers from an LLM, chosen by a panel of judges.")
judges_app = typer.Typer(no_args_is_help=True, help="List and show judge panels.")
app.add_typer(judges_app, name="judges")
app.command("ab")(ab)
app.command("build")(build)
app.command("doctor")(doctor)
app.command("rerank")(rerank)
app.command("serve")(serve)

out = Console(soft_wrap=True)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)
_state = {"debug": False}


@app.callback()
def _root(debug: Debug = False) -> None:
    _state["debug"] = debug


@app.command()
def run(
    prompt: str = typer.Argument(..., help="The user prompt."),
    n: N = 4,
    model: Model = "local",
    judge_model: JudgeModel = None,
    panel: Panel = "default",
    base_url: BaseUrl = None,
    seed: Seed = 0,
    max_tokens: MaxTokens = DEFAULT_MAX_TOKENS,
    judge_max_tokens: JudgeMaxTokens = None,
    temperature: Temperature = DEFAULT_TEMPERATURE,
    pair_margin: PairMargin = None,
    as_json: with_help(Json, "Print the whole Selection as JSON.") = False,
    log: Log = None,
    no_cache: NoCache = False,
    reference: Optional[str] = typer.Option(None, "--reference", help="A reference answer for the judges."),
    constraints: Optional[str] = typer.Option(
        None, "--constraints", help='JSON for verifier judges, e.g. \'{"answer": "72"}\' or IFEval\'s '
        '\'{"instruction_id_list": [...], "kwargs": [...]}\'.'),
) -> None:
    """Sample n answers, judge them, print the best."""
    with _progress() as report:
        selection = select(
            prompt, n=n, model=model, judge_model=judge_model, panel=panel, base_url=base_url, seed=seed,
            max_tokens=max_tokens, judge_max_tokens=judge_max_tokens, temperature=temperature,
            pair_margin=pair_margin, log=log, progress=report, cache=not no_cache,
            reference=reference, constraints=_json_object("--constraints", constraints),
        )
    if as_json:
        sys.stdout.write(selection.model_dump_json(indent=1) + "\n")
        if selection.best is None:  # nothing could be ranked: exit 1, as the table mode does
            raise typer.Exit(1)
        return
    _print_selection(selection, log)


@judges_app.command("list")
def judges_list() -> None:
    """List the built-in panels."""
    table = Table("panel", "aggregate", "judges", "description")
    for name in builtin_panels():
        p = load_panel(name)
        table.add_row(name, p.aggregate, ", ".join(f"{j.name} ({j.kind})" for j in p.judges), p.description)
    out.print(table)


@judges_app.command("show")
def judges_show(panel: str = typer.Argument(..., help="Panel name or path.")) -> None:
    """Print a panel's TOML."""
    load_panel(panel)  # validates
    sys.stdout.write(resolve(panel, "judges", ".toml").read_text(encoding="utf-8"))


def _json_object(option: str, text: Optional[str]) -> Optional[dict]:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BestofnError(f"{option} is not valid JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise BestofnError(f"{option} must be a JSON object, got {type(value).__name__}")
    return value


class _progress:
    """Progress on stderr while sampling and judging (silent when stderr is not a terminal)."""

    def __enter__(self):
        self.bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TimeElapsedColumn(), console=err, transient=True, disable=not err.is_terminal)
        self.bar.start()
        self.tasks: dict[str, int] = {}
        return self.report

    def report(self, stage: str, done: int, total: int) -> None:
        if stage not in self.tasks:
            self.tasks[stage] = self.bar.add_task({"generate": "sampling", "judge": "judging"}.get(stage, stage))
        self.bar.update(self.tasks[stage], completed=done, total=total)

    def __exit__(self, *exc):
        self.bar.stop()
        return False


def _print_selection(selection: Selection, log: Optional[Path]) -> None:
    judges = list(dict.fromkeys(v.judge for v in selection.verdicts))
    table = Table(title=f"{len(selection.candidates)} candidates, panel {selection.panel!r}")
    for column in ["rank", "#", *judges, "score", "answer"]:
        table.add_column(column, overflow="fold", max_width=60 if column == "answer" else None)
    rank = {cid: i + 1 for i, cid in enumerate(selection.ranking)}
    for c in selection.candidates:
        cells = []
        for j in judges:
            v = next((v for v in selection.verdicts if v.judge == j and c.id in v.candidate_ids), None)
            if v is not None and len(v.candidate_ids) > 1:  # pairwise: the judge's win rate, not one pair's points
                per_judge = selection.stats.get("per_judge", {}).get(c.id, {})
                cells.append(f"{per_judge[j]:.2f}" if j in per_judge else "-")
                continue
            cells.append("-" if v is None else f"{v.score:g}" if v.status == "ok" else v.status)
        score = selection.scores.get(c.id)
        shown = "dup" if c.duplicate_of is not None else str(rank.get(c.id, "-"))
        preview = " ".join(c.text.split())[:120]
        table.add_row(shown, str(c.index), *cells, "-" if score is None else f"{score:.3f}", preview)
    err.print(table)
    cost = selection.cost
    from bestofn.backends.meter import describe_cost  # the money beside the calls it leaves out

    err.print(f"calls {cost.calls}, tokens {cost.prompt_tokens}+{cost.completion_tokens}, "
              f"{describe_cost(cost)}, "
              f"{cost.seconds:.1f}s (generation {cost.generation_seconds:.1f}s, judging {cost.judging_seconds:.1f}s)"
              + (f"; {len(selection.pairs)} pair(s) appended to {log}" if log else ""))
    if selection.stats.get("vetoed") and selection.best and selection.best.id in selection.stats["vetoed"]:
        err.print("[yellow]warning: every rankable candidate was vetoed by the safety judge[/yellow]")
    if selection.best is None:
        err.print("no candidate could be ranked (too few valid verdicts)")
        raise typer.Exit(1)
    out.print(selection.best.text, markup=False, highlight=False)


def main() -> None:
    try:
        app(args=ray_flag(sys.argv[1:]))  # `build --ray` alone: a local Ray
    except (BestofnError, ValueError, OSError) as exc:
        if _state["debug"] or os.environ.get("BESTOFN_DEBUG"):
            raise
        sys.stderr.write(f"error: {' '.join(str(exc).split())}\n")
        sys.exit(2)


if __name__ == "__main__":
    main()
