"""`bestofn serve`: the OpenAI-compatible best-of-n proxy (see bestofn/apps/serve/server.py)."""

from __future__ import annotations

from typing import Optional

import typer

from bestofn.apps.cli.options import (
    BaseUrl, JudgeMaxTokens, JudgeModel, Log, MaxTokens, Model, N, NoCache, Panel, Seed, Temperature, with_help,
)
from bestofn.apps.options import DEFAULT_N
from bestofn.apps.serve.server import DEFAULT_HOST, DEFAULT_MAX_BODY, DEFAULT_PORT
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE


def serve(
    host: str = typer.Option(DEFAULT_HOST, "--host", help="Address to bind; any non-loopback one needs a token."),
    port: int = typer.Option(DEFAULT_PORT, "--port"),
    token: Optional[str] = typer.Option(None, "--token", envvar="BESTOFN_TOKEN", show_envvar=True,
                                        help="Bearer token clients must send (their API key). Prefer the env var."),
    model: Model = "local",
    judge_model: JudgeModel = None,
    panel: Panel = "default",
    base_url: BaseUrl = None,
    n: with_help(N, "Candidates per request (1-64), unless the request's bestofn.n says.") = DEFAULT_N,
    seed: with_help(Seed, "Seed for requests without one.") = 0,
    max_tokens: with_help(MaxTokens, "Generation limit when a request gives none.") = DEFAULT_MAX_TOKENS,
    judge_max_tokens: JudgeMaxTokens = None,
    temperature: with_help(Temperature, "When a request gives none.") = DEFAULT_TEMPERATURE,
    accept_threshold: Optional[float] = typer.Option(None, "--accept-threshold", help="Early stop: sample in waves until one candidate's aggregate score (0-1) reaches this."),
    wave_size: Optional[int] = typer.Option(None, "--wave-size", help="Candidates per wave with --accept-threshold (default n/4)."),
    log: Log = None,
    max_body_bytes: int = typer.Option(DEFAULT_MAX_BODY, "--max-body-bytes", help="Larger request bodies get a 413."),
    no_cache: NoCache = False,
    log_level: str = typer.Option("info", "--log-level"),
) -> None:
    """Serve best-of-n over an OpenAI-compatible API (/v1/chat/completions, /v1/models, /health)."""
    from bestofn.apps.serve.server import run

    run(host=host, port=port, token=token, log_level=log_level, model=model, judge_model=judge_model, panel=panel,
        base_url=base_url, n=n, seed=seed, max_tokens=max_tokens, judge_max_tokens=judge_max_tokens,
        temperature=temperature, accept_threshold=accept_threshold, wave_size=wave_size, log=log,
        max_body_bytes=max_body_bytes, cache=False if no_cache else None)
