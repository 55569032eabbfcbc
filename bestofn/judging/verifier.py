"""Verifier judge (kind "verifier"): a program checks each candidate against the prompt's constraints. No model.

    [[judge]]
    name = "ifeval"
    kind = "verifier"
    check = "ifeval"      # ifeval | ifeval_loose | exact_numeric | regex | json | json_schema; omit for "any
                          # check whose constraints came with the prompt"

Verdict: score = normalized = the fraction of checks passed (0 to 1: for IFEval the fraction of instructions
followed, otherwise 1 or 0); criteria = each check (instruction id -> 1.0 / 0.0); reasoning names what failed.
With nothing to check the verdict is `abstain` (with a reason); malformed constraints give `error`. The panel's
`scale` does not apply to verifiers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import ClassVar

from bestofn.judging.base import Judge, JudgeInput
from bestofn.records import Candidate, Verdict
from bestofn.judging.verifiers import AUTO, CHECKS, applicable, require


@dataclass
class VerifierJudge(Judge):
    pointwise: ClassVar[bool] = True
    needs_model: ClassVar[bool] = False

    def __post_init__(self) -> None:
        require([self.config.check] if self.config.check else list(AUTO))  # fail at panel build, not per candidate

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        return [self.verdict(item, c) for c in candidates]

    def _verdict(self, candidate: Candidate, **fields: object) -> Verdict:
        return Verdict(
            judge=self.name, kind="verifier", candidate_ids=[candidate.id], **fields  # type: ignore[arg-type]
        )

    def verdict(self, item: JudgeInput, candidate: Candidate) -> Verdict:
        started = time.perf_counter()
        check = self.config.check
        names = applicable(item.constraints, check, item.reference)
        if not names:
            wants = CHECKS[check].wants if check else "; ".join(f"{n}: {CHECKS[n].wants}" for n in AUTO)
            got = sorted(item.constraints) or "none"
            return self._verdict(candidate, status="abstain", reason=f"nothing to check: needs {wants} (got {got})")
        criteria: dict[str, float] = {}
        notes: list[str] = []
        details: dict[str, object] = {"checks": names}
        try:
            for name in names:
                result = CHECKS[name].check(candidate.text, item.constraints, reference=item.reference)
                for key, ok in result.criteria.items():
                    criteria[key if key not in criteria else f"{name}:{key}"] = 1.0 if ok else 0.0
                notes.extend(result.notes)
                details.update(result.details)
        except Exception as exc:  # a malformed constraint or a missing package: a verdict, never an exception
            return self._verdict(
                candidate,
                status="error",
                reason=f"{type(exc).__name__}: {exc}",
                latency_s=round(time.perf_counter() - started, 6),
            )
        score = sum(criteria.values()) / len(criteria) if criteria else 0.0
        passed = int(sum(criteria.values()))
        reasoning = f"{passed}/{len(criteria)} checks passed" + (": " + "; ".join(notes) if notes else "")
        return self._verdict(
            candidate,
            status="ok",
            score=score,
            normalized=score,
            criteria=criteria,
            reasoning=reasoning,
            template_sha256=None,
            latency_s=round(time.perf_counter() - started, 6),
            details=details,
        )
