"""The options the commands share, each declared once: its flag, type, checks, environment variable and help.

    def run(n: N = 4, model: Model = "local", seed: Seed = 0, as_json: with_help(Json, "Print ...") = False): ...

The default sits in each command's signature (it differs: `-n` is 4 for run, 8 for build); DESIGN part B
lists them. `with_help(Option, text)` is the same option with a command's own help text.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Annotated, Any, Optional, get_args

import typer

Model = Annotated[str, typer.Option(
    "--model", help="Generator: local, local:PATH.gguf, openai:M, vllm:M, anthropic:M.")]
JudgeModel = Annotated[Optional[str], typer.Option(
    "--judge-model", help="Model for every judge (default: the panel's, else local).")]
Panel = Annotated[str, typer.Option("--panel", help="A built-in panel name or a path to a panel TOML.")]
BaseUrl = Annotated[Optional[str], typer.Option(
    "--base-url", envvar="BESTOFN_BASE_URL", help="Base URL for vllm: specs.")]
Seed = Annotated[int, typer.Option("--seed")]
N = Annotated[int, typer.Option("-n", help="Candidates to sample (1-64).")]
MaxTokens = Annotated[int, typer.Option("--max-tokens", help="Generation token limit.")]
JudgeMaxTokens = Annotated[Optional[int], typer.Option(
    "--judge-max-tokens", min=16,
    help="Judge token limit; overrides every judge's TOML max_tokens (default: the TOML's, else 384).")]
Temperature = Annotated[float, typer.Option("--temperature")]
PairMargin = Annotated[Optional[float], typer.Option("--pair-margin", help="Override the panel's pair_margin.")]
NoCache = Annotated[bool, typer.Option("--no-cache", help="Neither read nor write the call cache.")]
Log = Annotated[Optional[Path], typer.Option("--log", help="Append preference pairs to this JSONL file.")]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
Debug = Annotated[bool, typer.Option("--debug", help="Show tracebacks.")]


def with_help(option: Any, help: str) -> Any:
    """`option` (one of the above) with a command's own help text; flag, type and checks unchanged."""
    kind, info = get_args(option)
    info = copy.copy(info)
    info.help = help
    return Annotated[kind, info]


__all__ = ["BaseUrl", "Debug", "JudgeMaxTokens", "JudgeModel", "Json", "Log", "MaxTokens", "Model", "N", "NoCache",
           "PairMargin", "Panel", "Seed", "Temperature", "with_help"]
