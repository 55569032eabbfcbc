"""`bestofn ab GOLD --a PANEL --b PANEL`: two judge panels against human labels, with baselines and intervals.

Registered in bestofn/apps/cli/main.py as `app.command("ab")(ab)`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bestofn.apps.cli.options import BaseUrl, JudgeMaxTokens, JudgeModel, Json, NoCache, Seed, with_help


def ab(
    gold: Path = typer.Argument(..., help="Labelled data: an LLMBar folder or dataset.json, a BIG-bench HHH "
                                "folder or task.json, XSTest's human_labeled_completions (folder or csv), or a "
                                "JSONL of {prompt, response_a, response_b, label: a|b|tie}."),
    a: str = typer.Option(..., "--a", help="Panel A: a built-in panel name or a path to a panel TOML."),
    b: str = typer.Option(..., "--b", help="Panel B: a built-in panel name or a path to a panel TOML."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write index.html, report.json and a per-item "
                                          "journal here (a rerun resumes from the journal)."),
    limit: Optional[int] = typer.Option(None, "--limit", min=1, help="At most N items per subset (a seeded sample)."),
    seed: Seed = 0,
    judge_model: with_help(
        JudgeModel, "Model for every judge of both panels (default: each panel's own, else local).") = None,
    base_url: BaseUrl = None,
    judge_max_tokens: JudgeMaxTokens = None,
    no_cache: NoCache = False,
    as_json: with_help(Json, "Print every figure as JSON on stdout.") = False,
) -> None:
    """A/B test two judge panels against human labels."""
    from bestofn.apps.ab import run_ab
    from bestofn.apps.ab.report import print_report

    err = Console(stderr=True)
    bar = Progress(TextColumn("panel {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, transient=True, disable=not err.is_terminal)
    tasks: dict[str, int] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label)
        bar.update(tasks[label], completed=done, total=total)

    with bar:
        result = run_ab(gold, a, b, limit=limit, seed=seed, judge_model=judge_model, base_url=base_url,
                        judge_max_tokens=judge_max_tokens, cache=not no_cache, report=report, progress=progress)
    if as_json:
        sys.stdout.write(json.dumps(result.figures, indent=1) + "\n")
    else:
        print_report(result.figures, Console(width=None if sys.stdout.isatty() else 200))
    if report is not None:
        err.print(f"report: {report / 'index.html'} (figures in {report / 'report.json'})", highlight=False)
