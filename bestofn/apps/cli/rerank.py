"""`bestofn rerank QUERY --docs DOCS.jsonl [--top-n K] [--method NAME] [--json]`: rerank documents for a query.

DOCS.jsonl holds one document a line: `{"id"?, "text", ...}` (any other keys ride along), or a JSON string.
Prints a table (rank, index, score, id, text), or with --json only `{"results": [{"index", "relevance_score",
"document"}, ...], "meta": {...}}`. Registered in bestofn/apps/cli/main.py as `app.command("rerank")(rerank)`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

from bestofn.apps.cli.options import BaseUrl, Json, Model, NoCache, Seed, with_help
from bestofn.apps.rerank.api import DEFAULT_METHOD
from bestofn.errors import ConfigError
from bestofn.sinks import jsonl

METHOD_HELP = ("llm-pointwise (default: works offline on the local model), llm-listwise, bi-encoder, "
               "cross-encoder, cascade (bi-encoder then an LLM stage; see --stages).")


def read_documents(path: Path, text_field: str = "text") -> list[Any]:
    """Documents from a JSONL file; a bad line names the file and the line."""
    if not path.is_file():
        raise ConfigError(f"documents file not found: {path}")
    docs: list[Any] = []
    for number, doc in jsonl.read(path):
        if isinstance(doc, dict) and not isinstance(doc.get(text_field), str):
            raise jsonl.BadLine(path, number, f"no string field {text_field!r}")
        if not isinstance(doc, (dict, str)):
            raise jsonl.BadLine(path, number, f"expected an object with {text_field!r} or a string")
        docs.append(doc)
    return docs


def rerank(
    query: str = typer.Argument(..., help="The search query."),
    docs: Path = typer.Option(..., "--docs", help="JSONL: one {\"id\"?, \"text\", ...} object (or string) a line."),
    top_n: Optional[int] = typer.Option(None, "--top-n", min=1, help="Return the best K (default: all)."),
    method: str = typer.Option(DEFAULT_METHOD, "--method", help=METHOD_HELP),
    model: with_help(Model, "Backend for LLM methods: local, openai:M, vllm:M, ...") = "local",
    encoder: Optional[Path] = typer.Option(None, "--encoder", help="Local model folder for bi-/cross-encoder "
                                           "(bi-encoder default: the packaged all-MiniLM-L6-v2)."),
    stages: Optional[str] = typer.Option(None, "--stages", help="Cascade stages METHOD:K,... "
                                         "(default bi-encoder:20,llm-pointwise)."),
    template: Optional[str] = typer.Option(None, "--template", help="Own LLM prompt: a built-in name or a "
                                           ".md.j2 path (default relevance.v1 / rerank_listwise.v1)."),
    text_field: str = typer.Option("text", "--text-field", help="The documents' text key."),
    base_url: BaseUrl = None,
    seed: Seed = 0,
    no_cache: with_help(NoCache, "Neither read nor write the cache.") = False,
    as_json: with_help(Json, 'Print {"results": [...], "meta": {...}} only.') = False,
) -> None:
    """Rerank documents for a query (RAG): best first, Cohere-shaped results."""
    from bestofn.apps.rerank.api import rerank as run_rerank

    documents = read_documents(docs, text_field)
    response = run_rerank(query, documents, top_n=top_n, method=method, model=model, encoder=encoder,
                          stages=stages, template=template, text_field=text_field, base_url=base_url, seed=seed,
                          cache=not no_cache)
    if as_json:
        sys.stdout.write(response.model_dump_json(indent=1) + "\n")
        return
    out, err = Console(soft_wrap=True), Console(stderr=True)
    meta = response.meta
    table = Table(title=f"{meta.returned} of {meta.documents} documents, {meta.method} ({meta.model})")
    for column in ("rank", "index", "score", "id", "text"):
        table.add_column(column, overflow="fold", max_width=80 if column == "text" else None)
    for rank, r in enumerate(response.results, start=1):
        score = "-" if r.relevance_score is None else f"{r.relevance_score:.4f}"
        doc_id = r.document.get("id")
        table.add_row(str(rank), str(r.index), score, "" if doc_id is None else str(doc_id),
                      " ".join(str(r.document[text_field]).split())[:200])
    out.print(table)
    err.print(f"{meta.llm_calls} LLM call(s), {meta.cache_hits} cache hit(s), {meta.failed} without a score, "
              f"{meta.seconds:.1f}s" + "".join(f"; {s.method}: {s.input} -> {s.kept}" for s in meta.stages
                                                if len(meta.stages) > 1), highlight=False)
