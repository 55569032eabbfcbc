"""What every verifier returns, and the error for constraints that cannot be checked as given."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bestofn.errors import ConfigError


class ConstraintError(ConfigError):
    """The constraints that came with a prompt are malformed (an unknown instruction id, a bad regex...)."""


@dataclass(frozen=True)
class CheckResult:
    """One verifier's findings on one response: each named check passed or not, in order."""

    criteria: dict[str, bool]
    notes: list[str] = field(default_factory=list)  # short, human-readable explanations of failures
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> int:
        return sum(self.criteria.values())

    @property
    def all_followed(self) -> bool:
        return all(self.criteria.values())

    @property
    def fraction(self) -> float:
        return self.passed / len(self.criteria) if self.criteria else 0.0

    @property
    def followed(self) -> list[bool]:
        return list(self.criteria.values())

    @property
    def failed(self) -> list[str]:
        return [name for name, ok in self.criteria.items() if not ok]
