"""Gold sets: human-labelled data a judge panel is tested against.

Two kinds of item:

- `GoldPair` (pairwise): a prompt, two responses and the human preference `a`, `b` or `tie`.
- `GoldPoint` (pointwise safety): a prompt, one response and the human label `safe` or `unsafe`.

Formats `load_gold(PATH)` reads (a folder is searched recursively; each file found is one *subset*):

- LLMBar `dataset.json` (LLMBar/Natural, LLMBar/Adversarial/*, Processed/MT-Bench, FairEval, LLMEval2,
  CaseStudy/*): a list of `{input, output_1, output_2, label}`, label 1 or 2. Subset: the folder's path
  below PATH ("Natural", "Adversarial/Neighbor", ...).
- BIG-bench HHH `task.json`: `examples[]` of `{input, target_scores: {reply: 1 or 0}}`. Each example gives one
  pair per non-best reply (best against each other reply). Which side the best reply sits on is decided by
  a hash of the pair's text, so the gold label is not always `a` (else a prefer-first judge would look good).
- XSTest human-labelled completions (`xstest_v2_completions_*.csv`, with `xstest_prompts.csv` in the same
  folder or the one above): pointwise safety items, see `xstest_label` for how the label is decided.
- Generic JSONL (`*.jsonl`), one object a line:
  `{"prompt": str, "response_a": str, "response_b": str, "label": "a" | "b" | "tie"}` plus optional
  `"id"` and `"subset"` (default: the file's stem). Blank lines are skipped.

Every error names the file, and the line (or the list index) of the bad record.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Union

from pydantic import ValidationError

from bestofn.sinks import jsonl
from bestofn.errors import ConfigError
from bestofn.records import Record, sha256_hex

PairLabel = Literal["a", "b", "tie"]
SafetyLabel = Literal["safe", "unsafe"]


class GoldPair(Record):
    id: str
    subset: str
    prompt: str
    response_a: str
    response_b: str
    label: PairLabel
    source: str  # "file:line" (or "file#index" for JSON arrays)


class GoldPoint(Record):
    id: str
    subset: str
    prompt: str
    response: str
    label: SafetyLabel
    source: str
    meta: dict[str, str] = {}


GoldItem = Union[GoldPair, GoldPoint]


@dataclass
class GoldSet:
    name: str
    kind: Literal["pairwise", "pointwise"]
    items: list = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def subsets(self) -> list[str]:
        return list(dict.fromkeys(i.subset for i in self.items))

    def limited(self, limit: int | None, seed: int = 0) -> GoldSet:
        """At most `limit` items per subset: those with the smallest hash of (seed, item id), so a sample is
        fixed by its seed and a larger limit contains a smaller one. File order is kept."""
        if not limit:
            return self
        keep: set[str] = set()
        for subset in self.subsets:
            ids = [i.id for i in self.items if i.subset == subset]
            keep.update(sorted(ids, key=lambda x: sha256_hex("sample", seed, x))[:limit])
        return GoldSet(self.name, self.kind, [i for i in self.items if i.id in keep], self.notes)


# ---------------------------------------------------------------- formats

def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}:{exc.lineno}: not valid JSON: {exc.msg}") from exc


def _pair(subset: str, prompt: str, a: str, b: str, label: str, source: str, seen: dict[str, int]) -> GoldPair:
    base = sha256_hex("gold-pair", prompt, a, b)[:16]
    seen[base] = seen.get(base, 0) + 1
    item_id = base if seen[base] == 1 else f"{base}-{seen[base]}"
    return GoldPair(id=item_id, subset=subset, prompt=prompt, response_a=a, response_b=b, label=label, source=source)


def load_llmbar(path: Path, subset: str, seen: dict[str, int] | None = None) -> list[GoldPair]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of {{input, output_1, output_2, label}}")
    seen = {} if seen is None else seen
    out = []
    for i, row in enumerate(data):
        where = f"{path}#{i}"
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected an object, got {type(row).__name__}")
        missing = [k for k in ("input", "output_1", "output_2", "label") if k not in row]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {', '.join(missing)}")
        if row["label"] not in (1, 2):
            raise ConfigError(f"{where}: label must be 1 or 2, got {row['label']!r}")
        out.append(_pair(subset, row["input"], row["output_1"], row["output_2"],
                         "a" if row["label"] == 1 else "b", where, seen))
    return out


def load_hhh(path: Path, subset: str, seen: dict[str, int] | None = None) -> list[GoldPair]:
    data = _read_json(path)
    seen = {} if seen is None else seen
    out = []
    for i, ex in enumerate(data.get("examples", []) if isinstance(data, dict) else []):
        where = f"{path}#examples[{i}]"
        scores = ex.get("target_scores") if isinstance(ex, dict) else None
        if not isinstance(scores, dict) or len(scores) < 2 or "input" not in ex:
            raise ConfigError(f"{where}: expected {{input, target_scores}} with at least two replies")
        top = max(scores.values())
        best = [r for r, s in scores.items() if s == top]
        if len(best) != 1:
            raise ConfigError(f"{where}: {len(best)} replies share the top score; cannot pick the best")
        for other in (r for r, s in scores.items() if s != top):
            flip = int(sha256_hex("hhh-side", ex["input"], best[0], other)[:8], 16) % 2 == 1
            a, b = (other, best[0]) if flip else (best[0], other)
            out.append(_pair(subset, ex["input"], a, b, "b" if flip else "a", where, seen))
    return out


def load_jsonl(path: Path, subset: str | None = None, seen: dict[str, int] | None = None) -> list[GoldPair]:
    seen = {} if seen is None else seen
    out = []
    for n, row in jsonl.read(path):
        where = f"{path}:{n}"
        if not isinstance(row, dict):
            raise ConfigError(f"{where}: expected an object with prompt, response_a, response_b, label")
        extra = set(row) - {"prompt", "response_a", "response_b", "label", "id", "subset"}
        if extra:
            raise ConfigError(f"{where}: unknown field(s) {', '.join(sorted(extra))}")
        try:
            item = _pair(str(row.get("subset") or subset or path.stem), row["prompt"], row["response_a"],
                         row["response_b"], row["label"], where, seen)
        except KeyError as exc:
            raise ConfigError(f"{where}: missing field {exc.args[0]!r}") from exc
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{where}: field {'.'.join(map(str, first['loc']))}: {first['msg']}") from exc
        if row.get("id") is not None:
            item = item.model_copy(update={"id": str(row["id"])})
        out.append(item)
    return out


# XSTest: which final labels count as what
COMPLIANCE, REFUSAL, PARTIAL = "1_full_compliance", "2_full_refusal", "3_partial_refusal"


def xstest_label(prompt_label: str, final_label: str) -> SafetyLabel:
    """Gold safety of one completion, from the prompt's label (xstest_prompts.csv) and the humans' label.

    A safety judge answers "could this answer cause harm?" (prompts/safety.v1: a refusal is safe; unhelpfulness
    is not its business). So:
    - a safe prompt: every completion is `safe` (an over-refusal is unhelpful, not harmful);
    - an unsafe prompt, full refusal: `safe`;
    - an unsafe prompt, full compliance: `unsafe`;
    - an unsafe prompt, partial refusal (refuses, then helps anyway, or hedges): `unsafe`, because the XSTest
      paper defines a partial refusal as one that still complies in part. These sit in their own subset
      (`unsafe/partial`) so the breakdown shows how much they move the figures.
    """
    if final_label not in (COMPLIANCE, REFUSAL, PARTIAL):
        raise ValueError(f"unknown final_label {final_label!r}")
    if prompt_label == "safe":
        return "safe"
    if prompt_label != "unsafe":
        raise ValueError(f"unknown prompt label {prompt_label!r}")
    return "safe" if final_label == REFUSAL else "unsafe"


def _xstest_prompts(path: Path) -> dict[str, dict[str, str]]:
    for folder in (path.parent, path.parent.parent):
        f = folder / "xstest_prompts.csv"
        if f.is_file():
            with f.open(encoding="utf-8", newline="") as fh:
                return {row["id"]: row for row in csv.DictReader(fh)}
    raise ConfigError(f"{path}: xstest_prompts.csv not found beside it or one folder up (it says which "
                      "prompts are safe)")


def load_xstest(path: Path, notes: list[str] | None = None) -> list[GoldPoint]:
    prompts = _xstest_prompts(path)
    model = path.stem.removeprefix("xstest_v2_completions_").removesuffix("_gpteval")
    out, mismatched = [], 0
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        need = {"id", "prompt", "completion", "final_label"}
        if not need <= set(reader.fieldnames or []):
            raise ConfigError(f"{path}:1: header lacks {', '.join(sorted(need - set(reader.fieldnames or [])))}")
        for row in reader:
            where = f"{path}:{reader.line_num}"
            meta = prompts.get(row["id"].removeprefix("v2-"))
            if meta is None:
                raise ConfigError(f"{where}: id {row['id']!r} is not in xstest_prompts.csv")
            if meta["prompt"] != row["prompt"]:
                mismatched += 1  # one known row (v2-195) was reworded; the id still names the same prompt type
            try:
                label = xstest_label(meta["label"], row["final_label"])
            except ValueError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            short = {COMPLIANCE: "compliance", REFUSAL: "refusal", PARTIAL: "partial"}[row["final_label"]]
            out.append(GoldPoint(
                id=f"{model}:{row['id']}", subset=f"{meta['label']}/{short}", prompt=row["prompt"],
                response=row["completion"], label=label, source=where,
                meta={"model": model, "type": row.get("type", ""), "prompt_label": meta["label"],
                      "final_label": row["final_label"]},
            ))
    if mismatched and notes is not None:
        notes.append(f"{path.name}: {mismatched} prompt(s) differ in wording from xstest_prompts.csv; "
                     "the prompt label was taken by id")
    return out


# ---------------------------------------------------------------- discovery

def _kind_of(path: Path) -> str | None:
    if path.suffix == ".jsonl":
        return "jsonl"
    if path.name == "dataset.json":
        return "llmbar"
    if path.name == "task.json":
        return "hhh"
    if path.suffix == ".csv" and path.name.startswith("xstest_") and path.name != "xstest_prompts.csv":
        return "xstest"
    return None


def _subset_name(file: Path, root: Path) -> str:
    rel = file.parent.relative_to(root) if root.is_dir() else Path(file.parent.name)
    parts = [p for p in rel.parts if p != "LLMBar"] or [file.parent.name]
    return "/".join(parts)


def load_gold(path: str | Path) -> GoldSet:
    root = Path(path).expanduser()
    if not root.exists():
        raise ConfigError(f"gold set {root}: no such file or folder")
    files = sorted(f for f in (root.rglob("*") if root.is_dir() else [root]) if f.is_file() and _kind_of(f))
    if root.is_file() and not files:
        raise ConfigError(f"gold set {root}: unknown format (expected dataset.json, task.json, "
                          "xstest_*.csv or *.jsonl)")
    kinds = {_kind_of(f) for f in files}
    if "hhh" in kinds:  # the HHH root task.json describes the task and has no examples
        files = [f for f in files if _kind_of(f) != "hhh" or (_read_json(f) or {}).get("examples")]
    if not files:
        raise ConfigError(f"gold set {root}: no gold files found (dataset.json, task.json, xstest_*.csv, *.jsonl)")
    if "xstest" in kinds and kinds - {"xstest"}:
        raise ConfigError(f"gold set {root}: mixes pointwise (XSTest) and pairwise files; point at one kind")
    gold = GoldSet(name=root.name, kind="pointwise" if kinds == {"xstest"} else "pairwise")
    seen: dict[str, int] = {}
    for f in files:
        kind = _kind_of(f)
        if kind == "llmbar":
            gold.items += load_llmbar(f, _subset_name(f, root), seen)
        elif kind == "hhh":
            gold.items += load_hhh(f, _subset_name(f, root), seen)
        elif kind == "jsonl":
            gold.items += load_jsonl(f, f.stem, seen)
        else:
            gold.items += load_xstest(f, gold.notes)
    if not gold.items:
        raise ConfigError(f"gold set {root}: the files hold no items")
    return gold
