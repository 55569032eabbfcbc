"""A panel is data: one TOML file in judges/ names its judges, rubrics, models, weights and rules."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bestofn.errors import ConfigError
from bestofn.config.resources import builtin_dir, resolve
from bestofn.registry import names_in

JUDGE_NAMES = ("correctness", "safety", "helpfulness", "instruction_following")


class Criterion(BaseModel):
    """One criterion of a rubric that scores several in one call, each on its own range (direct answer 0-5,
    completeness 0-3, factual accuracy 0-2). `description` overrides the template's own text for the name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    scale: tuple[int, int] = (1, 10)
    weight: float = Field(default=1.0, ge=0.0)
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        if self.scale[0] >= self.scale[1]:
            raise ValueError(f"criterion {self.name!r}: scale {list(self.scale)} must be [low, high] with low < high")
        return self

    def normalize(self, score: float) -> float:
        low, high = self.scale
        return (score - low) / (high - low)


class Example(BaseModel):
    """A few-shot example a template shows the judge (panel data is trusted: it goes in the system turn).
    `verdict` is what the judge should have answered ("3", "A", "B > A > C"); `answer_b` is for pairwise."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    answer: str
    verdict: str
    explanation: str = ""
    question: str | None = None
    answer_b: str | None = None


class LengthControl(BaseModel):
    """Keep length from buying score. `regress`: remove the linear trend of the aggregate score on log length
    across the prompt's candidates (AlpacaEval's length-controlled idea, fitted per selection); `penalty`:
    subtract `strength` per doubling of length over the candidates' median length."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: Literal["regress", "penalty"] = "regress"
    strength: float = Field(default=0.05, ge=0.0, le=1.0)
    unit: Literal["words", "chars"] = "words"


# The [[judge]] keys each form of judge reads, and no others: its class in bestofn/judging reads the kind's
# own keys (tests/test_panel_keys.py checks this table against their source), build_judges and the backend
# choice read the model keys, the aggregate reads weight and gate. A key its form does not read is an error.
# `per-criterion` is a rubric judge with `per_criterion = true`: its criteria carry the scales and weights and
# name its verdicts, so it has no scale, weight or gate of its own. A pairwise verdict covers two candidates,
# so it cannot gate one. docs/panels.md shows this table in its "read by" column.
_MODEL = ("rubric", "model", "base_url", "temperature", "max_tokens", "examples")
_POINTWISE = ("samples", "score_method", "top_logprobs", "needs_reference", "criteria", "per_criterion", "reasoning",
              "reasoning_tokens")
_GATE = ("gate", "gate_pass")
JUDGE_KEYS: dict[str, frozenset[str]] = {
    "rubric": frozenset({"name", "kind", "scale", "weight", *_GATE, *_MODEL, *_POINTWISE}),
    "per-criterion": frozenset({"name", "kind", *_MODEL, *_POINTWISE}),
    "pairwise": frozenset({"name", "kind", "weight", *_MODEL, "mode", "score_method", "top_logprobs", "tie_margin",
                           "reasoning_tokens"}),
    "listwise": frozenset({"name", "kind", "weight", *_GATE, *_MODEL, "shuffles", "window", "step", "passes"}),
    "verifier": frozenset({"name", "kind", "weight", *_GATE, "check"}),
    "consensus": frozenset({"name", "kind", "weight", "answer_regex"}),
}
Kind = Literal["rubric", "pairwise", "listwise", "verifier", "consensus"]  # the built-in kinds (bestofn.judging.KINDS)
KIND_NAMES: tuple[str, ...] = Kind.__args__  # type: ignore[attr-defined]
#: third parties' judge kinds come through this entry point group; a panel may name them, with any keys
JUDGES_GROUP = "bestofn.judges"


def judge_form(kind: str, per_criterion: bool = False) -> str:
    """The row of JUDGE_KEYS a judge's keys are checked against."""
    return "per-criterion" if kind == "rubric" and per_criterion else kind


class JudgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: str = "rubric"  # KIND_NAMES or a third party's; `scorer` (a reward model) is refused until a scorer judge exists
    rubric: str | None = None  # template name (prompts/<rubric>.md.j2) or path
    scale: tuple[int, int] = (1, 10)
    weight: float = Field(default=1.0, ge=0.0)
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=16)
    samples: int = Field(default=1, ge=1, le=16)  # sample the judge k times and average
    # consensus judges: the final answer is this regex's last match (its first group, if it has one) instead of
    # the numeric verifier's extractor
    answer_regex: str | None = None
    check: str | None = None  # verifier judges: which check (bestofn.judging.verifiers.CHECKS); None = every applicable one
    # rubric: several criteria in one structured call; per_criterion=True yields one Verdict per criterion (judge =
    # the criterion's name, so a compact panel reads like the default one), else one Verdict scored by the total
    criteria: list[Criterion] = Field(default_factory=list)
    per_criterion: bool = False
    score_method: Literal["sampled", "logprob"] = "sampled"  # logprob: expected score over the score tokens (G-Eval)
    top_logprobs: int = Field(default=10, ge=1, le=20)
    reasoning: bool = True  # rubric: false asks for the score first, no reasoning (bestofn.judging.direct)
    # the reasoning's budget in tokens (bestofn.judging.base.DEFAULT_REASONING_TOKENS), where the backend keeps one
    reasoning_tokens: int | None = Field(default=None, ge=1)
    needs_reference: bool = False  # reference-guided grading: abstain when the prompt comes without a reference
    examples: list[Example] = Field(default_factory=list)  # few-shot examples, rendered by the template
    mode: Literal["all-pairs", "knockout"] = "all-pairs"  # pairwise: n(n-1) calls, or a 2(n-1)-call knockout
    tie_margin: float = Field(default=0.0, ge=0.0)  # pairwise logprob: |pooled margin| <= this is a tie
    shuffles: int = Field(default=2, ge=1, le=16)  # listwise: orders averaged (a seeded order, its reverse, more)
    window: int | None = Field(default=None, ge=2)  # listwise: candidates per call (None: all in one call)
    step: int | None = Field(default=None, ge=1)  # listwise: how far the window moves (default window // 2)
    passes: int | None = Field(default=None, ge=1)  # listwise: at most this many passes (default: until sorted)
    gate: bool = False  # a gate (verifier-first): candidates that fail it rank below every one that passes
    gate_pass: float = Field(default=1.0, ge=0.0, le=1.0)  # the normalised score that passes the gate

    @model_validator(mode="before")
    @classmethod
    def _keys_of_its_kind(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        name, kind = data.get("name", "?"), data.get("kind", "rubric")
        if kind not in KIND_NAMES and kind not in (plugins := names_in(JUDGES_GROUP)):
            soon = " is not supported yet (no scorer judge exists)" if kind == "scorer" else " is unknown"
            known = [*KIND_NAMES, *(k for k in plugins if k not in KIND_NAMES)]
            raise ValueError(f"judge {name!r}: kind {kind!r}{soon}; use one of {', '.join(known)}")
        form = judge_form(kind, bool(data.get("per_criterion")))
        keys = JUDGE_KEYS.get(form, cls.model_fields)  # a third party's kind: its class reads what it reads
        unread = [k for k in data if k in cls.model_fields and k not in keys]
        if unread:
            what = "rubric judges with per_criterion = true" if form == "per-criterion" else f"{kind} judges"
            reads = ", ".join(sorted(JUDGE_KEYS[form]))
            raise ValueError(f"judge {name!r}: {', '.join(map(repr, unread))}: {what} do not read "
                             f"{'it' if len(unread) == 1 else 'them'} (they read {reads})")
        return data

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        low, high = self.scale
        if low >= high:
            raise ValueError(f"judge {self.name!r}: scale {list(self.scale)} must be [low, high] with low < high")
        if self.kind in ("rubric", "pairwise", "listwise") and not self.rubric:
            raise ValueError(f"judge {self.name!r} of kind {self.kind!r} needs a rubric")
        if self.criteria:
            names = [c.name for c in self.criteria]
            if len(set(names)) != len(names) or "reasoning" in names:
                raise ValueError(f"judge {self.name!r}: criterion names must be unique and not 'reasoning': {names}")
            total = (sum(c.scale[0] for c in self.criteria), sum(c.scale[1] for c in self.criteria))
            if not self.per_criterion and "scale" in self.model_fields_set and tuple(self.scale) != total:
                raise ValueError(f"judge {self.name!r}: scale {list(self.scale)} is not the criteria's total {list(total)}")
            if not self.per_criterion:
                object.__setattr__(self, "scale", total)
        elif self.per_criterion:
            raise ValueError(f"judge {self.name!r}: per_criterion needs criteria")
        if "tie_margin" in self.model_fields_set and self.score_method != "logprob":
            raise ValueError(f"judge {self.name!r}: tie_margin is read with score_method = \"logprob\" only")
        if self.answer_regex is not None:
            try:
                re.compile(self.answer_regex)
            except re.error as exc:
                raise ValueError(f"judge {self.name!r}: answer_regex {self.answer_regex!r} is not a regex: {exc}") from None
        if self.window is not None and self.step is not None and self.step >= self.window:
            raise ValueError(f"judge {self.name!r}: step {self.step} must be smaller than window {self.window}")
        return self

    def scorers(self) -> dict[str, float]:
        """The judge names its Verdicts carry, with their weights (a per-criterion judge: its criteria)."""
        if self.per_criterion:
            return {c.name: c.weight for c in self.criteria}
        return {self.name: self.weight}

    def normalize(self, score: float) -> float:
        low, high = self.scale
        return (score - low) / (high - low)


class SafetyVeto(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    judge: str = "safety"
    below: float


class Panel(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    name: str
    description: str = ""
    aggregate: Literal["weighted_mean", "median", "borda", "bradley_terry", "majority_of_best"] = "weighted_mean"
    top_k: int | None = Field(default=None, ge=1)  # majority_of_best: how many of the rubric's best vote
    quorum: int = Field(default=1, ge=1)
    pair_margin: float = Field(default=0.1, ge=0.0, le=1.0)
    safety_veto: SafetyVeto | None = None
    ties: Literal["half", "davidson"] = "half"  # bradley_terry: a tie is half a win each, or Davidson's model
    # bradley_terry: length and markdown counts as covariates of the fit, so that style does not buy strength
    style_control: bool = False
    length_control: LengthControl | None = None
    # content-free candidates (empty, punctuation, a lone opener, repetitive; bestofn.judging.content): recorded
    # only, ranked below every candidate with content (default), or made unrankable
    content_free: Literal["flag", "demote", "veto"] = "demote"
    judges: list[JudgeConfig] = Field(alias="judge", min_length=1)
    source: str | None = None  # the file it was loaded from

    @model_validator(mode="after")
    def _check(self) -> Panel:
        names = [name for j in self.judges for name in ([j.name] + list(j.scorers()) if j.per_criterion else [j.name])]
        if len(set(names)) != len(names):
            raise ValueError(f"panel {self.name!r} names a judge twice: {names}")
        if self.safety_veto and self.safety_veto.judge not in names:
            raise ValueError(f"safety_veto names judge {self.safety_veto.judge!r}, which is not in the panel")
        if self.style_control and self.aggregate != "bradley_terry":
            raise ValueError(f"style_control is read by aggregate = \"bradley_terry\" only, not {self.aggregate!r}")
        if (self.top_k is not None) != (self.aggregate == "majority_of_best"):
            raise ValueError("aggregate = \"majority_of_best\" needs top_k (how many of the rubric's best vote), "
                             "and top_k is read by it only")
        if self.aggregate == "majority_of_best":
            voters = [j.name for j in self.judges if j.kind == "consensus" and not j.gate]
            others = [j.name for j in self.judges if j.kind != "consensus" and not j.gate]
            if len(voters) != 1 or not others:
                raise ValueError("aggregate = \"majority_of_best\" needs one consensus judge and at least one other "
                                 f"scoring judge (the rubric whose top_k vote); the panel has {voters or 'no'} "
                                 f"consensus and {others or 'no'} other")
        scoring = len(self.weights())
        if self.quorum > scoring:
            raise ValueError(f"quorum {self.quorum} is larger than the panel's {scoring} scoring judges")
        return self

    def weights(self) -> dict[str, float]:
        """Verdict judge name -> weight, for every judge whose score ranks candidates (gates excluded)."""
        return {name: w for j in self.judges if not j.gate for name, w in j.scorers().items()}

    def gates(self) -> dict[str, JudgeConfig]:
        return {j.name: j for j in self.judges if j.gate}

    def judge(self, name: str) -> JudgeConfig:
        for j in self.judges:
            if j.name == name:
                return j
        raise ConfigError(f"panel {self.name!r} has no judge {name!r}")


def load_panel(name_or_path: str | Path) -> Panel:
    path = resolve(str(name_or_path), "judges", ".toml")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"panel file {path}: {exc}") from exc
    try:
        return Panel.model_validate({**data, "source": str(path)})
    except ValidationError as exc:
        first = exc.errors()[0]
        loc, msg = [str(p) for p in first["loc"]], first["msg"].removeprefix("Value error, ")
        if loc[:1] == ["judge"] and len(loc) > 1 and loc[1].isdigit():  # judge.2.samples -> judge 'x': samples
            judge = (data.get("judge") or [])[int(loc[1])]
            named = isinstance(judge, dict) and "name" in judge
            loc[:2] = [f"judge {judge['name']!r}" if named else f"judge #{int(loc[1]) + 1}"]
            if len(loc) == 1 and msg.startswith(loc[0]):  # the message names the judge already
                loc = []
        parts = [f"panel file {path}", *loc[:1], ".".join(loc[1:]), msg]
        raise ConfigError(": ".join(part for part in parts if part)) from exc


def builtin_panels() -> list[str]:
    return sorted(p.stem for p in builtin_dir("judges").glob("*.toml"))
