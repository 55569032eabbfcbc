"""Dataset exports: a finished prompt's result -> rows in a trainer's format -> JSONL or Parquet.

Formats (every row has a stable `id`, so a build can write each row exactly once):

- `trl-conversational` (default): one row per pair, TRL's conversational preference format: `id`, `prompt`
  (messages), `chosen` and `rejected` (one assistant message each), `score_chosen`, `score_rejected`,
  `margin`, `strategy`, `judges`, `template_sha256`, `generator`, `panel`, `seed`, plus `prompt_id`,
  `chosen_id`, `rejected_id`. `id` = sha256 of (prompt, strategy, chosen id, rejected id).
- `trl`: the same with plain strings for `prompt`, `chosen` and `rejected`.
- `kto`: unpaired, TRL's KTO format: `id`, `prompt` (messages), `completion` (one assistant message),
  `label` (true for a chosen answer, false for a rejected one), `score`, `candidate_id`, `prompt_id`,
  `strategy`, `generator`, `panel`, `seed`. Each answer appears once; one that is chosen in one pair and
  rejected in another (all-pairs) is left out as ambiguous.
- `sft`: one row per prompt, TRL's conversational SFT format (best-of-n distillation, a.k.a. rejection-sampling
  fine-tuning): `id`, `prompt_id`, `messages` (the prompt's messages, then the best answer as an assistant
  turn), `score`, `candidate_id`, `generator`, `panel`, `seed`. A prompt gives no row when its best scores below
  `min_score` (the normalised aggregate, 0 to 1) or is not in the panel's top tier: vetoed or without a valid
  safety verdict (as for pairs), failed or unchecked by a gate (verifier-first), or content-free (`sft_skip`).
- `full`: one row per prompt, like UltraFeedback: `id`, `prompt_id`, `prompt`, `metadata`, `candidates`
  (each with `score`, `rank` and per-judge `ratings`), `verdicts`, `ranking`, `best_id`, `pairs`, `judges`,
  `generator`, `panel`, `seed`, `skipped_reason`.

The output path's suffix picks the file type: `.jsonl` or `.parquet` (needs the `export` extra).
`to_dataset(path)` loads either into a `datasets.Dataset`, or a folder that `bestofn build --ray` wrote: its
`part-*` files (the rows in part order; sort by `id` for a canonical order), not its `_bestofn/` bookkeeping.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from bestofn.sinks import jsonl
from bestofn.errors import ConfigError, MissingExtraError
from bestofn.sinks.jsonl import replace_atomically
from bestofn.records import Message, messages_id, sha256_hex

FORMATS: tuple[str, ...] = ("trl-conversational", "trl", "kto", "sft", "full")
SUFFIXES = (".jsonl", ".parquet")
PAIR_FIELDS = ("score_chosen", "score_rejected", "margin", "strategy", "judges", "template_sha256", "generator",
               "panel", "seed")


def check_output(path: str | Path, fmt: str) -> Path:
    path = Path(path)
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if path.suffix.lower() not in SUFFIXES:
        raise ConfigError(f"output {path}: the suffix must be .jsonl or .parquet (it picks the file type)")
    return path


def _text(messages: list[dict[str, Any]]) -> str:
    """A prompt as one string (TRL's standard format): a single user turn is its content."""
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"]
    return "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)


def _pair_rows(record: dict[str, Any], plain: bool) -> list[dict[str, Any]]:
    rows = []
    for p in record["selection"]["pairs"]:
        row = {"id": p["id"], "prompt_id": record["prompt_id"]}
        if plain:
            row.update(prompt=_text(p["prompt"]), chosen=p["chosen"][0]["content"], rejected=p["rejected"][0]["content"])
        else:
            row.update(prompt=p["prompt"], chosen=p["chosen"], rejected=p["rejected"])
        row.update({k: p[k] for k in PAIR_FIELDS})
        row.update(chosen_id=p["chosen_id"], rejected_id=p["rejected_id"])
        rows.append(row)
    return rows


def _kto_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    sel = record["selection"]
    labels: dict[str, set[bool]] = {}
    for p in sel["pairs"]:
        labels.setdefault(p["chosen_id"], set()).add(True)
        labels.setdefault(p["rejected_id"], set()).add(False)
    if not sel["pairs"]:
        return []
    first = sel["pairs"][0]
    by_id = {c["id"]: c for c in sel["candidates"] if c["duplicate_of"] is None}
    key = messages_id([_msg(m) for m in sel["prompt"]])
    rows = []
    for cid in sel["ranking"]:  # best first
        if len(labels.get(cid, ())) != 1:
            continue  # not in any pair, or both chosen and rejected
        label = next(iter(labels[cid]))
        rows.append({
            "id": sha256_hex("kto", key, first["strategy"], cid, label),
            "prompt_id": record["prompt_id"],
            "prompt": sel["prompt"],
            "completion": [{"role": "assistant", "content": by_id[cid]["text"]}],
            "label": label,
            "score": sel["scores"][cid],
            "candidate_id": cid,
            **{k: first[k] for k in ("strategy", "generator", "panel", "seed")},
        })
    return rows


def sft_skip(record: dict[str, Any], min_score: float = 0.0) -> str | None:
    """Why a finished prompt gives no `sft` row (None: it gives one), from its Selection's tiers."""
    sel = record["selection"]
    best = sel["best"]
    if best is None:
        return "no rankable candidate (judge quorum not met)"
    stats, cid = sel.get("stats") or {}, best["id"]
    if cid in stats.get("vetoed", ()) or cid in stats.get("safety_flagged", ()):
        return "best candidate vetoed or unchecked by the safety judge"
    gate = stats.get("gate") or {}
    if cid in gate.get("failed", ()) or cid in gate.get("unchecked", ()):
        return "best candidate failed or was unchecked by a gate"
    if cid in (stats.get("content_free") or {}):
        return "best candidate content-free"
    score = sel["scores"].get(cid)
    if score is None:
        return "best candidate ranked but not scored"
    if score < min_score:
        return f"best score below --min-score {min_score:g}"
    return None


def _sft_rows(record: dict[str, Any], min_score: float) -> list[dict[str, Any]]:
    if sft_skip(record, min_score) is not None:
        return []
    sel = record["selection"]
    best = sel["best"]
    return [{
        "id": sha256_hex("sft", messages_id([_msg(m) for m in sel["prompt"]]), best["id"]),
        "prompt_id": record["prompt_id"],
        "messages": [*sel["prompt"], {"role": "assistant", "content": best["text"]}],
        "score": sel["scores"][best["id"]],
        "candidate_id": best["id"],
        "generator": record["generator"],
        "panel": sel["panel"],
        "seed": record["seed"],
    }]


def _msg(m: dict[str, Any]) -> Message:
    return Message.model_validate(m)


def _full_row(record: dict[str, Any]) -> dict[str, Any]:
    sel = record["selection"]
    judges = list(dict.fromkeys(v["judge"] for v in sel["verdicts"]))
    rank = {cid: i + 1 for i, cid in enumerate(sel["ranking"])}
    candidates = []
    for c in sel["candidates"]:
        ratings: dict[str, float | None] = {j: None for j in judges}
        for v in sel["verdicts"]:
            if v["status"] == "ok" and v["candidate_ids"] == [c["id"]]:
                ratings[v["judge"]] = v["score"]
        candidates.append({
            "id": c["id"], "index": c["index"], "text": c["text"], "finish_reason": c["finish_reason"],
            "duplicate_of": c["duplicate_of"], "score": sel["scores"].get(c["id"]), "rank": rank.get(c["id"]),
            "ratings": ratings, "prompt_tokens": c["usage"]["prompt_tokens"],
            "completion_tokens": c["usage"]["completion_tokens"],
        })
    verdicts = [
        {k: v.get(k) for k in ("judge", "kind", "candidate_ids", "status", "score", "normalized", "reasoning",
                                "reason", "template_sha256", "model")}
        for v in sel["verdicts"]
    ]
    pairs = [{k: p[k] for k in ("id", "chosen_id", "rejected_id", "margin", "strategy")} for p in sel["pairs"]]
    return {
        "id": sha256_hex("full", messages_id([_msg(m) for m in sel["prompt"]])),
        "prompt_id": record["prompt_id"],
        "prompt": sel["prompt"],
        "metadata": record.get("metadata") or {},
        "candidates": candidates,
        "verdicts": verdicts,
        "ranking": sel["ranking"],
        "best_id": sel["best"]["id"] if sel["best"] else None,
        "pairs": pairs,
        "judges": judges,
        "generator": record["generator"],
        "panel": sel["panel"],
        "seed": record["seed"],
        "skipped_reason": record.get("reason"),
    }


def rows_for(fmt: str, record: dict[str, Any], *, min_score: float = 0.0) -> list[dict[str, Any]]:
    """The rows one finished prompt contributes to an export (a build journal's record); `min_score`: `sft`'s."""
    if fmt == "trl-conversational":
        return _pair_rows(record, plain=False)
    if fmt == "trl":
        return _pair_rows(record, plain=True)
    if fmt == "kto":
        return _kto_rows(record)
    if fmt == "sft":
        return _sft_rows(record, min_score)
    if fmt == "full":
        return [_full_row(record)]
    raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")


# -- files -----------------------------------------------------------------------------------------------


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq  # noqa: F401
    except ModuleNotFoundError as exc:
        raise MissingExtraError("Parquet export", "export", "pyarrow") from exc
    return pa


def to_table(rows: list[dict[str, Any]]) -> Any:
    """Rows -> a pyarrow Table. A column whose values do not share one type (free-form metadata, say) is
    stored as JSON text rather than failing the export."""
    pa = _pyarrow()
    try:
        return pa.Table.from_pylist(rows)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
        pass
    names = list(dict.fromkeys(k for r in rows for k in r))
    arrays = []
    for name in names:
        values = [r.get(name) for r in rows]
        try:
            arrays.append(pa.array(values))
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            arrays.append(pa.array([None if v is None else json.dumps(v, default=str) for v in values], pa.string()))
    return pa.Table.from_arrays(arrays, names=names)


def _has_empty_struct(t: Any) -> bool:
    pa = _pyarrow()
    if pa.types.is_struct(t):
        return t.num_fields == 0 or any(_has_empty_struct(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return _has_empty_struct(t.value_type)
    return False


#: types of fields that may be null in every row of a file (inferred as `null`): so every file has one schema
NULLABLE = {"duplicate_of": "int64", "rank": "int64", "score": "float64", "normalized": "float64",
            "score_chosen": "float64", "score_rejected": "float64", "margin": "float64"}


def _denull(pa: Any, name: str, t: Any) -> Any:
    if pa.types.is_null(t):
        return pa.type_for_alias(NULLABLE.get(name, "string"))
    if pa.types.is_struct(t):
        return pa.struct([pa.field(t.field(i).name, _denull(pa, t.field(i).name, t.field(i).type))
                          for i in range(t.num_fields)])
    if pa.types.is_list(t):
        return pa.list_(_denull(pa, name, t.value_type))
    return t


def parquet_safe(table: Any) -> Any:
    """Parquet cannot store a struct with no fields (an always-empty `metadata`, say): such a column is stored
    as JSON text; a column that is null in every row gets its usual type rather than `null`."""
    pa = _pyarrow()
    for i, f in enumerate(table.schema):
        if _has_empty_struct(f.type):
            values = [None if v is None else json.dumps(v, default=str) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string()), pa.array(values, pa.string()))
    schema = pa.schema([pa.field(f.name, _denull(pa, f.name, f.type)) for f in table.schema])
    return table.cast(schema) if schema != table.schema else table


def write_rows(path: str | Path, rows: Iterable[dict[str, Any]]) -> int:
    """Write rows to `path` (JSONL or Parquet by suffix), atomically. Returns the number of rows."""
    path = Path(path)
    kind = path.suffix.lower()
    if kind not in SUFFIXES:
        raise ConfigError(f"output {path}: the suffix must be .jsonl or .parquet")
    if kind == ".jsonl":
        return jsonl.write(path, rows)
    _pyarrow()
    import pyarrow.parquet as pq

    materialised = list(rows)
    replace_atomically(path, lambda tmp: pq.write_table(parquet_safe(to_table(materialised)), tmp))
    return len(materialised)


def part_files(folder: str | Path) -> list[Path]:
    """A build folder's committed part files, in name order (temp files start with a dot and are left out)."""
    return sorted(p for p in Path(folder).glob("part-*") if p.suffix.lower() in SUFFIXES)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if path.is_dir():
        return [row for part in part_files(path) for row in read_rows(part)]
    if path.suffix.lower() == ".parquet":
        _pyarrow()
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    return [row for _, row in jsonl.read(path)]


def to_dataset(source: str | Path | Iterable[dict[str, Any]]) -> Any:
    """A `datasets.Dataset` from an export file (JSONL or Parquet), a build folder (`--ray`: its parts) or rows.
    Needs the `export` extra."""
    try:
        import datasets
        import pyarrow as pa
        import pyarrow.parquet as pq
        from datasets.table import InMemoryTable
    except ModuleNotFoundError as exc:
        raise MissingExtraError("to_dataset()", "export", "datasets") from exc
    if isinstance(source, (str, Path)) and Path(source).is_dir():
        parts = part_files(source)
        if not parts:
            if (Path(source) / "_bestofn").is_dir():  # a build whose prompts gave no row
                return datasets.Dataset.from_list([])
            raise ConfigError(f"{source}: a folder with no part-*.parquet or part-*.jsonl file")
        tables = [pq.read_table(p) if p.suffix.lower() == ".parquet" else to_table(read_rows(p)) for p in parts]
        # parts are made apart: a column that is null in all of one part's rows gets its type from the others
        table = pa.concat_tables(tables, promote_options="permissive")
    elif isinstance(source, (str, Path)):
        path = Path(source)
        table = pq.read_table(path) if path.suffix.lower() == ".parquet" else to_table(read_rows(path))
    else:
        table = to_table(list(source))
    return datasets.Dataset(InMemoryTable(parquet_safe(table)))
