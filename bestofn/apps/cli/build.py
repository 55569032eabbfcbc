"""`bestofn build PROMPTS -o OUT`: the command (registered in bestofn/cli.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console

from bestofn.apps.build.inputs import Columns
from bestofn.apps.build.report import print_summary
from bestofn.apps.build.runner import DEFAULT_CONCURRENCY, DEFAULT_N, BuildError, build as run_build
from bestofn.sinks.export import FORMATS
from bestofn.ranking.pairs import STRATEGIES
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE


def build(
    prompts: Path = typer.Argument(..., help="Prompts: .jsonl, .json, .csv or .parquet with a prompt or messages column."),
    out: Path = typer.Option(..., "-o", "--out", help="Output file; its suffix (.jsonl or .parquet) picks the type."),
    fmt: str = typer.Option("trl-conversational", "--format", help=f"One of: {', '.join(FORMATS)}."),
    strategy: str = typer.Option("best-worst", "--strategy", help=f"One of: {', '.join(STRATEGIES)}."),
    n: int = typer.Option(DEFAULT_N, "-n", help="Candidates per prompt (1-64)."),
    model: str = typer.Option("local", "--model", help="Generator: local, local:PATH.gguf, openai:M, vllm:M, ..."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Model for every judge (default: the panel's, else local)."),
    panel: str = typer.Option("default", "--panel", help="A built-in panel name or a path to a panel TOML."),
    base_url: Optional[str] = typer.Option(None, "--base-url", envvar="BESTOFN_BASE_URL", help="Base URL for vllm: specs."),
    seed: int = typer.Option(0, "--seed"),
    max_tokens: int = typer.Option(DEFAULT_MAX_TOKENS, "--max-tokens", help="Generation token limit."),
    judge_max_tokens: Optional[int] = typer.Option(None, "--judge-max-tokens", min=16,
                                                   help="Judge token limit; overrides every judge's TOML max_tokens (default: the TOML's, else 384)."),
    temperature: float = typer.Option(DEFAULT_TEMPERATURE, "--temperature"),
    pair_margin: Optional[float] = typer.Option(None, "--pair-margin", help="Override the panel's pair_margin."),
    concurrency: int = typer.Option(DEFAULT_CONCURRENCY, "--concurrency", help="Prompts in flight at once."),
    on_error: str = typer.Option("skip", "--on-error", help="skip: report bad records and failed prompts and go on; stop: stop at the first."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the call cache."),
    prompt_column: str = typer.Option("prompt", "--prompt-column"),
    messages_column: str = typer.Option("messages", "--messages-column"),
    id_column: str = typer.Option("id", "--id-column"),
    reference_column: str = typer.Option("reference", "--reference-column"),
    constraints_column: str = typer.Option("constraints", "--constraints-column"),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
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
            cache=not no_cache, columns=columns, console=err,
        )
    except BuildError as exc:
        summary = exc.summary
    except KeyboardInterrupt:
        err.print(f"interrupted: the finished prompts are kept in {out}; run the same command again to resume")
        raise typer.Exit(130) from None
    if as_json:
        sys.stdout.write(summary.model_dump_json(indent=1) + "\n")
    else:
        print_summary(err, summary)
    if summary.stopped:
        err.print(f"error: {summary.stopped}", markup=False, highlight=False)
        raise typer.Exit(1)
    if summary.failed:
        err.print(f"{summary.failed} prompt(s) failed; run the same command again to retry them", markup=False)
        raise typer.Exit(1)
