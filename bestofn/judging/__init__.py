"""Judges by kind. A panel's TOML names the kind of each judge; this maps kinds to classes."""

from __future__ import annotations

from typing import Callable

from bestofn.backends.base import Backend
from bestofn.errors import ConfigError
from bestofn.judging.base import DEFAULT_JUDGE_MAX_TOKENS, Judge, JudgeInput
from bestofn.judging.compact import CompactJudge
from bestofn.judging.listwise import ListwiseJudge
from bestofn.judging.pairwise import PairwiseJudge
from bestofn.judging.rubric import RubricJudge
from bestofn.config.panel import JudgeConfig, Panel

__all__ = ["Judge", "JudgeInput", "KINDS", "build_judges"]

KINDS: dict[str, type[Judge]] = {"rubric": RubricJudge, "pairwise": PairwiseJudge, "listwise": ListwiseJudge}
from bestofn.judging.verifier import VerifierJudge  # noqa: E402
KINDS["verifier"] = VerifierJudge


def build_judges(
    panel: Panel,
    backend_for: Callable[[JudgeConfig], Backend | None],
    *,
    max_tokens: int | None = None,
) -> list[Judge]:
    """The panel's judges. `max_tokens` (the --judge-max-tokens flag) overrides each judge's TOML `max_tokens`,
    which overrides DEFAULT_JUDGE_MAX_TOKENS."""
    judges = []
    for config in panel.judges:
        cls = KINDS.get(config.kind)
        if config.kind == "rubric" and config.criteria:  # several criteria in one call per candidate
            cls = CompactJudge
        if cls is None:
            raise ConfigError(f"panel {panel.name!r}: judge {config.name!r} has kind {config.kind!r}, not supported yet")
        judges.append(
            cls(
                config=config,
                backend=backend_for(config) if cls.needs_model else None,
                max_tokens=max_tokens or config.max_tokens or DEFAULT_JUDGE_MAX_TOKENS,
                temperature=config.temperature if config.temperature is not None else 0.0,
            )
        )
    return judges
