"""Read a build's prompts from JSONL, JSON, CSV or Parquet.

Each record holds a `prompt` string or a `messages` list (column names are configurable), optionally an id,
a reference answer and constraints (a `constraints` object, or IFEval's `instruction_id_list` and `kwargs`);
every other column is kept as metadata. A bad record is an `InputIssue` naming the file and line (or row); the
caller decides whether it skips the record or stops the run. Nothing is dropped silently.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from bestofn.sinks import jsonl
from bestofn.errors import ConfigError, MissingExtraError
from bestofn.records import Message, as_messages, messages_id

IFEVAL_KEYS = ("instruction_id_list", "kwargs")


@dataclass(frozen=True)
class Columns:
    prompt: str = "prompt"
    messages: str = "messages"
    id: str = "id"
    reference: str = "reference"
    constraints: str = "constraints"


@dataclass(frozen=True)
class PromptRow:
    id: str
    messages: list[Message]
    line: int  # 1-based line (JSONL, CSV) or row (JSON array, Parquet)
    reference: str | None = None
    constraints: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    given_id: bool = False  # False: the id was derived from the messages


@dataclass(frozen=True)
class InputIssue:
    file: str
    line: int
    reason: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.reason}"


@dataclass
class Inputs:
    rows: list[PromptRow]
    issues: list[InputIssue]
    records: int  # records seen (blank lines excluded)


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line or row number, record) pairs; a record that cannot be decoded is an InputIssue instead."""
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        for number, value in jsonl.scan(path):  # a bad line is an issue of its own; the others are read
            yield number, InputIssue(str(path), number, value.reason) if isinstance(value, jsonl.BadLine) else value
    elif suffix == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start + 1} of the file)") from exc
        if not isinstance(data, list):
            raise ConfigError(f"{path}: a .json input must hold a list of records (use .jsonl for one per line)")
        yield from enumerate(data, 1)
    elif suffix in (".csv", ".tsv"):
        try:
            path.read_bytes().decode("utf-8")  # strict: a CSV that is not UTF-8 is refused, not patched with U+FFFD
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{path}: not valid UTF-8 (byte {exc.start + 1} of the file)") from exc
        with path.open(encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh, delimiter="\t" if suffix == ".tsv" else ",")
            start = 2
            for record in reader:
                if None in record:
                    yield start, InputIssue(str(path), start, f"more fields than the {len(reader.fieldnames or [])} columns")
                else:
                    yield start, {k: v for k, v in record.items() if v is not None}
                start = reader.line_num + 1
    elif suffix == ".parquet":
        try:
            import pyarrow.parquet as pq
        except ModuleNotFoundError as exc:
            raise MissingExtraError("reading Parquet input", "export", "pyarrow") from exc
        number = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            for record in batch.to_pylist():
                number += 1
                yield number, record
    else:
        raise ConfigError(f"{path}: unknown input type {suffix or '(no suffix)'!r}; use .jsonl, .json, .csv or .parquet")


def _messages(value: Any, column: str) -> list[Message]:
    if isinstance(value, str):  # CSV cells hold JSON text
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{column}: not a JSON list ({exc.msg})") from exc
    if not isinstance(value, list):
        raise ValueError(f"{column}: expected a list of {{role, content}} objects, got {type(value).__name__}")
    if not value:
        raise ValueError(f"{column}: empty list")
    out = []
    for i, item in enumerate(value):
        if isinstance(item, dict):
            item = {k: v for k, v in item.items() if v is not None}  # Parquet structs carry null fields
        try:
            out.append(Message.model_validate(item))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ValueError(f"{column}[{i}]{'.' + where if where else ''}: {first['msg']}") from None
    if not any(m.role == "user" and m.content.strip() for m in out):
        raise ValueError(f"{column}: no non-empty user message")
    return out


def constraints_of(record: dict[str, Any], cols: Columns) -> dict[str, Any]:
    """A record's constraints: its constraints column (an object, or JSON text) plus IFEval's own columns."""
    constraints = record.get(cols.constraints)
    if isinstance(constraints, str) and constraints.strip():
        try:
            constraints = json.loads(constraints)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{cols.constraints}: not a JSON object ({exc.msg})") from exc
    if constraints in (None, ""):
        constraints = {}
    if not isinstance(constraints, dict):
        raise ValueError(f"{cols.constraints}: expected an object, got {type(constraints).__name__}")
    return {**constraints, **{k: record[k] for k in IFEVAL_KEYS if record.get(k) is not None}}


def _parse(record: Any, number: int, cols: Columns) -> PromptRow:
    if not isinstance(record, dict):
        raise ValueError(f"expected an object with a {cols.prompt!r} or {cols.messages!r} field, got {type(record).__name__}")
    if record.get(cols.messages) not in (None, ""):
        messages = _messages(record[cols.messages], cols.messages)
    elif cols.prompt in record and record[cols.prompt] is not None:
        prompt = record[cols.prompt]
        if not isinstance(prompt, str):
            raise ValueError(f"{cols.prompt}: expected a string, got {type(prompt).__name__}")
        if not prompt.strip():
            raise ValueError(f"{cols.prompt}: empty prompt")
        messages = [Message(role="user", content=prompt)]
    else:
        raise ValueError(f"no {cols.prompt!r} or {cols.messages!r} field (fields: {', '.join(map(str, record)) or 'none'})")
    as_messages(messages)  # the pipeline's own checks (e.g. lone surrogates): an input issue here, not a failed call

    raw_id = record.get(cols.id)
    if raw_id is None or raw_id == "":
        rid, given = "p-" + messages_id(messages), False
    elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
        raise ValueError(f"{cols.id}: expected a string or an integer, got {type(raw_id).__name__}")
    else:
        rid, given = str(raw_id), True

    reference = record.get(cols.reference)
    if reference is not None and not isinstance(reference, str):
        raise ValueError(f"{cols.reference}: expected a string, got {type(reference).__name__}")

    constraints = constraints_of(record, cols)
    used = {cols.prompt, cols.messages, cols.id, cols.reference, cols.constraints, *IFEVAL_KEYS}
    metadata = {k: v for k, v in record.items() if k not in used}
    return PromptRow(rid, messages, number, reference or None, constraints, metadata, given)


def read_prompts(path: str | Path, columns: Columns | None = None) -> Inputs:
    """Every record of the file as a PromptRow, or an InputIssue: malformed, empty, wrong types, duplicates."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"prompts file not found: {path}")
    cols = columns or Columns()
    rows: list[PromptRow] = []
    issues: list[InputIssue] = []
    first_id: dict[str, int] = {}
    first_prompt: dict[str, int] = {}
    records = 0
    for number, record in _records(path):
        records += 1
        if isinstance(record, InputIssue):
            issues.append(record)
            continue
        try:
            row = _parse(record, number, cols)
        except ValueError as exc:
            issues.append(InputIssue(str(path), number, str(exc)))
            continue
        key = messages_id(row.messages)
        if key in first_prompt:
            issues.append(InputIssue(str(path), number, f"duplicate prompt (same messages as line {first_prompt[key]})"))
            continue
        if row.id in first_id:
            issues.append(InputIssue(str(path), number, f"duplicate id {row.id!r} (first at line {first_id[row.id]})"))
            continue
        first_id[row.id] = number
        first_prompt[key] = number
        rows.append(row)
    return Inputs(rows=rows, issues=issues, records=records)
