"""Judges by kind. A panel's TOML names the kind of each judge; `KINDS` maps kinds to Judge classes.

A kind is one line in KINDS (`"name": "module:Class"`); third parties add theirs through the `bestofn.judges`
entry point group, with no change here.
"""

from __future__ import annotations

from typing import Callable

from bestofn.backends.base import Backend
from bestofn.config.panel import JudgeConfig, Panel
from bestofn.judging.base import DEFAULT_JUDGE_MAX_TOKENS, Judge, JudgeInput
from bestofn.judging.compact import CompactJudge  # a rubric judge with criteria: several in one call
from bestofn.registry import Registry

__all__ = ["Judge", "JudgeInput", "KINDS", "build_judges"]

#: judge kind -> Judge class
KINDS: Registry[type[Judge]] = Registry("judge kind", "bestofn.judges", {
    "rubric": "bestofn.judging.rubric:RubricJudge",
    "pairwise": "bestofn.judging.pairwise:PairwiseJudge",
    "listwise": "bestofn.judging.listwise:ListwiseJudge",
    "verifier": "bestofn.judging.verifier:VerifierJudge",
    "consensus": "bestofn.judging.consensus:ConsensusJudge",
})


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
        cls = KINDS.load(config.kind, where=f"panel {panel.name!r}: judge {config.name!r}: ")
        if config.kind == "rubric" and config.criteria:  # several criteria in one call per candidate
            cls = CompactJudge
        judges.append(
            cls(
                config=config,
                backend=backend_for(config) if cls.needs_model else None,
                max_tokens=max_tokens or config.max_tokens or DEFAULT_JUDGE_MAX_TOKENS,
                temperature=config.temperature if config.temperature is not None else 0.0,
            )
        )
    return judges
