"""`bestofn serve`: the OpenAI-compatible best-of-n proxy (see bestofn/serve.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE
from bestofn.apps.serve.server import DEFAULT_HOST, DEFAULT_MAX_BODY, DEFAULT_N, DEFAULT_PORT


def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to bind; any non-loopback one needs a token."),
    port: int = typer.Option(DEFAULT_PORT, "--port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="BESTOFN_TOKEN", show_envvar=True,
                                        help="Bearer token clients must send (their API key). Prefer the env var."),
    model: str = typer.Option("local", "--model", help="Generator: local, local:PATH.gguf, openai:M, vllm:M, anthropic:M."),
    judge_model: Optional[str] = typer.Option(None, "--judge-model", help="Model for every judge (default: the panel's, else local)."),
    panel: str = typer.Option("default", "--panel", help="A built-in panel name or a path to a panel TOML."),
    base_url: Optional[str] = typer.Option(None, "--base-url", envvar="BESTOFN_BASE_URL", help="Base URL for vllm: specs."),
    n: int = typer.Option(DEFAULT_N, "-n", help="Candidates per request (1-64), unless the request's bestofn.n says."),
    seed: int = typer.Option(0, "--seed", help="Seed for requests without one."),
    max_tokens: int = typer.Option(DEFAULT_MAX_TOKENS, "--max-tokens", help="Generation limit when a request gives none."),
    judge_max_tokens: Optional[int] = typer.Option(None, "--judge-max-tokens", min=16,
                                                   help="Judge token limit; overrides every judge's TOML max_tokens (default: the TOML's, else 384)."),
    temperature: float = typer.Option(DEFAULT_TEMPERATURE, "--temperature", help="When a request gives none."),
    accept_threshold: Optional[float] = typer.Option(None, "--accept-threshold", help="Early stop: sample in waves until one candidate's aggregate score (0-1) reaches this."),
    wave_size: Optional[int] = typer.Option(None, "--wave-size", help="Candidates per wave with --accept-threshold (default n/4)."),
    log: Optional[Path] = typer.Option(None, "--log", help="Append preference pairs to this JSONL file."),
    max_body_bytes: int = typer.Option(DEFAULT_MAX_BODY, "--max-body-bytes", help="Larger request bodies get a 413."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the call cache."),
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve best-of-n over an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health)."""
    from bestofn.apps.serve.server import run

    run(host=host, port=port, token=token, log_level=log_level, model=model, judge_model=judge_model, panel=panel,
        base_url=base_url, n=n, seed=seed, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
        temperature=temperature, accept_threshold=accept_threshold, wave_size=wave_size, log=log,
        max_body_bytes=max_body_bytes, cache=False if no_cache else None)
