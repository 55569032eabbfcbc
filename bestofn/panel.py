"""A panel is data: one TOML file in judges/ names its judges, rubrics, models, weights and rules."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from bestofn.errors import ConfigError
from bestofn.resources import builtin_dir, resolve

JUDGE_NAMES = ("correctness", "safety", "helpfulness", "instruction_following")


class JudgeConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    kind: Literal["rubric", "pairwise", "listwise", "verifier", "scorer"] = "rubric"
    rubric: str | None = None  # template name (prompts/<rubric>.md.j2) or path
    scale: tuple[int, int] = (1, 10)
    weight: float = Field(default=1.0, ge=0.0)
    model: str | None = None
    base_url: str | None = None
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    max_tokens: int | None = Field(default=None, ge=16)
    samples: int = Field(default=1, ge=1, le=16)  # sample the judge k times and average

    @model_validator(mode="after")
    def _check(self) -> JudgeConfig:
        low, high = self.scale
        if low >= high:
            raise ValueError(f"judge {self.name!r}: scale {list(self.scale)} must be [low, high] with low < high")
        if self.kind in ("rubric", "pairwise", "listwise") and not self.rubric:
            raise ValueError(f"judge {self.name!r} of kind {self.kind!r} needs a rubric")
        return self

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
    aggregate: Literal["weighted_mean", "median", "borda", "bradley_terry"] = "weighted_mean"
    quorum: int = Field(default=1, ge=1)
    pair_margin: float = Field(default=0.1, ge=0.0, le=1.0)
    safety_veto: SafetyVeto | None = None
    judges: list[JudgeConfig] = Field(alias="judge", min_length=1)
    source: str | None = None  # the file it was loaded from

    @model_validator(mode="after")
    def _check(self) -> Panel:
        names = [j.name for j in self.judges]
        if len(set(names)) != len(names):
            raise ValueError(f"panel {self.name!r} names a judge twice: {names}")
        if self.safety_veto and self.safety_veto.judge not in names:
            raise ValueError(f"safety_veto names judge {self.safety_veto.judge!r}, which is not in the panel")
        if self.quorum > len(self.judges):
            raise ValueError(f"quorum {self.quorum} is larger than the panel's {len(self.judges)} judges")
        return self

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
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"panel file {path}: {where}: {first['msg']}") from exc


def builtin_panels() -> list[str]:
    return sorted(p.stem for p in builtin_dir("judges").glob("*.toml"))
