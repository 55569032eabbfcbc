"""A build's prompts read with Ray Data: the same readers and checks as a single-process build (inputs.py).

Ray Data lists the files (a file, a folder, a glob; local paths or any filesystem pyarrow reaches: s3://, gs://,
hdfs://...) and reads them in parallel tasks, one file per task, so each record keeps its line (JSONL, CSV) or
row (JSON array, Parquet) number: a bad record is an issue "FILE:LINE: why", exactly as a single-process build
reports it, and never stops the read. Ray's own read_json/read_csv/read_parquet cannot do that: they number
nothing and fail a whole file on one bad line. Each row of the Dataset is one record:

    path, line, id, key (the messages' id), issue (why the record is bad, or null), fatal (the whole file is
    unreadable: issue says why), row (the PromptRow, pickled)

`scan()` is the driver's pass over the small columns: the records, the issues, the duplicates (first wins, in
file then line order, as today) and the rows to build.
"""

from __future__ import annotations

import pickle
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pyarrow as pa
from ray.data.datasource import FileBasedDatasource

from bestofn.apps.build.inputs import Columns, InputIssue, _parse, _records
from bestofn.errors import ConfigError

SUFFIXES = ["jsonl", "ndjson", "json", "csv", "tsv", "parquet"]
SCHEMA = pa.schema([("path", pa.string()), ("line", pa.int64()), ("id", pa.string()), ("key", pa.string()),
                    ("issue", pa.string()), ("fatal", pa.bool_()), ("row", pa.binary())])
BLOCK_ROWS = 1024


class PromptsDatasource(FileBasedDatasource):
    """Prompt files as rows of SCHEMA; `shown` is the name a single given file is reported by."""

    def __init__(self, paths: str | list[str], columns: Columns, shown: str | None = None, **kwargs: Any):
        super().__init__(paths, file_extensions=SUFFIXES, **kwargs)
        self.columns, self.shown = columns, shown

    def _read_stream(self, f: Any, path: str) -> Iterator[pa.Table]:
        shown = self.shown or path
        local = Path(path)
        copy = None
        if not local.is_file():  # another filesystem: read from a local copy with the same suffix
            copy = tempfile.NamedTemporaryFile(suffix=local.suffix, delete=False)
            copy.write(f.readall())
            copy.close()
            local = Path(copy.name)
        rows: list[dict[str, Any]] = []
        try:
            for number, record in _records(local):
                rows.append(_row(shown, number, record, self.columns))
                if len(rows) >= BLOCK_ROWS:
                    yield pa.Table.from_pylist(rows, schema=SCHEMA)
                    rows = []
        except ConfigError as exc:  # the whole file cannot be read (a .json that is not JSON, not UTF-8...)
            rows.append({"path": shown, "line": 0, "fatal": True, "issue": str(exc).replace(str(local), shown)})
        finally:
            if copy is not None:
                Path(copy.name).unlink(missing_ok=True)
        if rows:
            yield pa.Table.from_pylist(rows, schema=SCHEMA)


def _row(path: str, number: int, record: Any, cols: Columns) -> dict[str, Any]:
    from bestofn.records import messages_id

    if isinstance(record, InputIssue):
        return {"path": path, "line": number, "issue": record.reason, "fatal": False}
    try:
        row = _parse(record, number, cols)
    except ValueError as exc:
        return {"path": path, "line": number, "issue": str(exc), "fatal": False}
    return {"path": path, "line": number, "id": row.id, "key": messages_id(row.messages), "fatal": False,
            "row": pickle.dumps(row, protocol=5)}


def read(prompts: str | Path | list[str], columns: Columns) -> Any:
    """The prompts as a materialised Ray Dataset of SCHEMA rows."""
    import ray.data

    single = isinstance(prompts, (str, Path)) and Path(prompts).is_file()
    paths = [str(p) for p in prompts] if isinstance(prompts, list) else str(prompts)
    if isinstance(prompts, (str, Path)) and "://" not in str(prompts) and not Path(prompts).exists():
        raise ConfigError(f"prompts file not found: {prompts}")
    source = PromptsDatasource(paths, columns, shown=str(prompts) if single else None)
    return ray.data.read_datasource(source).materialize()


@dataclass
class Scan:
    records: int  # records seen (blank lines excluded), as a single-process build counts them
    issues: list[InputIssue]  # in file, then line order
    todo: dict[tuple[str, int], str]  # (path, line) -> prompt id of every valid, first-seen prompt


def scan(ds: Any) -> Scan:
    """The driver's pass over the small columns: issues, duplicates (first wins), the prompts to build."""
    light = []
    for batch in ds.select_columns(["path", "line", "id", "key", "issue", "fatal"]).iter_batches(
            batch_format="pyarrow", batch_size=65536):
        light.extend(batch.to_pylist())
    light.sort(key=lambda r: (r["path"], r["line"]))
    for r in light:
        if r["fatal"]:
            raise ConfigError(r["issue"])
    issues: list[InputIssue] = []
    todo: dict[tuple[str, int], str] = {}
    first_id: dict[str, int] = {}
    first_prompt: dict[str, int] = {}
    for r in light:
        if r["issue"] is not None:
            issues.append(InputIssue(r["path"], r["line"], r["issue"]))
        elif r["key"] in first_prompt:
            issues.append(InputIssue(r["path"], r["line"], f"duplicate prompt (same messages as line {first_prompt[r['key']]})"))
        elif r["id"] in first_id:
            issues.append(InputIssue(r["path"], r["line"], f"duplicate id {r['id']!r} (first at line {first_id[r['id']]})"))
        else:
            first_id[r["id"]], first_prompt[r["key"]] = r["line"], r["line"]
            todo[(r["path"], r["line"])] = r["id"]
    return Scan(records=len(light), issues=issues, todo=todo)


_KEYS: dict[str, frozenset[tuple[str, int]]] = {}  # per worker process: the key set of each filter, fetched once


def select(ref: Any, batch: pa.Table) -> pa.Table:
    """The rows whose (path, line) is in the set behind `ref` (a ray.put frozenset)."""
    import pyarrow.compute as pc
    import ray

    key = ref.hex()
    if key not in _KEYS:
        _KEYS.clear()
        _KEYS[key] = ray.get(ref)
    keys = _KEYS[key]
    mask = [(p, n) in keys for p, n in zip(batch.column("path").to_pylist(), batch.column("line").to_pylist())]
    return batch.filter(pc.and_(pa.array(mask, pa.bool_()), pc.invert(batch.column("fatal"))))


def prompt_rows(batch: pa.Table) -> list[Any]:
    return [pickle.loads(b) for b in batch.column("row").to_pylist()]


__all__ = ["PromptsDatasource", "Scan", "prompt_rows", "read", "scan", "select"]
