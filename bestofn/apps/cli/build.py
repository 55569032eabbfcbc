"""`bestofn build PROMPTS -o OUT`: the command (registered in bestofn/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from bestofn.apps.build.budget import EXIT_BUDGET
from bestofn.apps.build.estimate import BuildEstimate, print_estimate
from bestofn.apps.build.inputs import Columns
from bestofn.apps.build.report import print_summary
from bestofn.apps.build.runner import DEFAULT_CONCURRENCY, DEFAULT_N, BuildError, build as run_build
from bestofn.apps.cli.options import (
    BaseUrl, JudgeMaxTokens, JudgeModel, Json, MaxTokens, Model, N, NoCache, PairMargin, Panel, Seed, Temperature,
    with_help,
)
from bestofn.sinks.export import FORMATS
from bestofn.ranking.pairs import STRATEGIES
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE


def ray_flag(args: list[str]) -> list[str]:
    """`--ray` with no ADDRESS (last, or before another option) is `--ray=local`: typer has no optional values."""
    return [f"{a}=local" if a == "--ray" and (i + 1 == len(args) or args[i + 1].startswith("-")) else a
            for i, a in enumerate(args)]


def build(
    prompts: Path = typer.Argument(..., help="Prompts: .jsonl, .json, .csv or .parquet with a prompt or messages column."),
    out: Path = typer.Option(..., "-o", "--out", help="Output file; its suffix (.jsonl or .parquet) picks the type. "
                             "With --ray: a folder of part files."),
    fmt: str = typer.Option("trl-conversational", "--format", help=f"One of: {', '.join(FORMATS)}."),
    min_score: float = typer.Option(0.0, "--min-score", min=0.0, max=1.0,
                                    help="sft: the best's normalised score (0-1) a prompt needs to give a row."),
    strategy: str = typer.Option("best-worst", "--strategy", help=f"One of: {', '.join(STRATEGIES)}."),
    n: with_help(N, "Candidates per prompt (1-64).") = DEFAULT_N,
    model: Model = "local",
    judge_model: JudgeModel = None,
    panel: Panel = "default",
    base_url: BaseUrl = None,
    seed: Seed = 0,
    max_tokens: MaxTokens = DEFAULT_MAX_TOKENS,
    judge_max_tokens: JudgeMaxTokens = None,
    temperature: Temperature = DEFAULT_TEMPERATURE,
    pair_margin: PairMargin = None,
    concurrency: int = typer.Option(DEFAULT_CONCURRENCY, "--concurrency", help="Prompts in flight at once."),
    on_error: str = typer.Option("skip", "--on-error", help="skip: report bad records and failed prompts and go on; stop: stop at the first."),
    no_cache: NoCache = False,
    prompt_column: str = typer.Option("prompt", "--prompt-column"),
    messages_column: str = typer.Option("messages", "--messages-column"),
    id_column: str = typer.Option("id", "--id-column"),
    reference_column: str = typer.Option("reference", "--reference-column"),
    constraints_column: str = typer.Option("constraints", "--constraints-column"),
    as_json: with_help(Json, "Print the summary as JSON on stdout.") = False,
    dry_run: bool = typer.Option(False, "--dry-run", help="Read and check the inputs, print the model calls, tokens "
                                 "and money by stage; call no model, write nothing."),
    max_usd: Optional[float] = typer.Option(None, "--max-usd", help="Stop starting prompts once this run has spent "
                                            "this many US dollars (every model needs a price); exit 3."),
    max_calls: Optional[int] = typer.Option(None, "--max-calls", help="Stop starting prompts once this run has made "
                                            "this many model calls; exit 3. A rerun goes on for as many again."),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="[ADDRESS]", help="Run on Ray: alone, RAY_ADDRESS's "
                                      "cluster or a new local one; auto, HOST:PORT or ray://HOST:PORT: that cluster. "
                                      "OUT is a folder."),
    file_type: Optional[str] = typer.Option(None, "--file-type", help="With --ray: the part files' type, parquet "
                                            "(default) or jsonl."),
) -> None:
    """Build a preference dataset: n answers per prompt, judged, paired, written exactly once (resumable)."""
    err = Console(stderr=True)
    columns = Columns(prompt=prompt_column, messages=messages_column, id=id_column, reference=reference_column,
                      constraints=constraints_column)
    try:
        summary = run_build(
            prompts, out, format=fmt, strategy=strategy, n=n, model=model, judge_model=judge_model, panel=panel,
            base_url=base_url, seed=seed, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
            temperature=temperature, pair_margin=pair_margin, concurrency=concurrency, on_error=on_error,
            cache=not no_cache, columns=columns, console=err, min_score=min_score, dry_run=dry_run,
            max_usd=max_usd, max_calls=max_calls, ray=ray, file_type=file_type,
        )
    except BuildError as exc:
        summary = exc.summary
    except KeyboardInterrupt:
        err.print(f"interrupted: the finished prompts are kept in {out}; run the same command again to resume")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(summary.model_dump_json(indent=1) + "\n")
    elif isinstance(summary, BuildEstimate):
        print_estimate(err, summary)
    else:
        print_summary(err, summary)
    if isinstance(summary, BuildEstimate):
        return
    if summary.stopped:
        err.print(f"error: {summary.stopped}", markup=False, highlight=False)
        raise typer.Exit(1)
    if summary.failed:
        err.print(f"{summary.failed} prompt(s) failed; run the same command again to retry them", markup=False)
    if summary.budget_stop:  # exit 3: stopped by --max-calls / --max-usd, nothing lost; the rerun goes on
        err.print(f"budget: {summary.budget_stop}", markup=False, highlight=False)
        raise typer.Exit(EXIT_BUDGET)
    if summary.failed:
        raise typer.Exit(1)
