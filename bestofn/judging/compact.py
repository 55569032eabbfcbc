"""Several criteria in one structured call per candidate (a rubric judge with `criteria`).

The reply is {"reasoning": ..., "<criterion>": int, ...}, each integer validated against its criterion's own
range. With `per_criterion = true` the judge yields one Verdict per criterion (judge = the criterion's name,
kind "rubric"), so a `compact` panel's output reads like the default panel's with a quarter of the calls.
Otherwise it yields one Verdict whose score is the total (a classic reranking rubric: direct answer 0-5,
completeness 0-3, factual accuracy 0-2) with the parts in `criteria`.

A call's usage is recorded once, on the first verdict it produced. `samples` > 1 averages each criterion over
the samples (spread in details); `score_method = "logprob"` takes each criterion's expected score over its score
tokens where the backend returns logprobs (see logprob.py).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from bestofn.errors import BackendError
from bestofn.judging.asking import ask_samples, reasons
from bestofn.judging.base import Judge, JudgeInput, render_question
from bestofn.judging.budget import failure_status
from bestofn.judging.delimiters import delimit
from bestofn.judging.logprob import score_from
from bestofn.config.panel import Criterion
from bestofn.records import Candidate, Message, Usage, Verdict
from bestofn.config.templates import Template, load_template


def criteria_output_model(criteria: tuple[Criterion, ...]) -> type[BaseModel]:
    """Reasoning first, then one integer per criterion on its own range, in the panel's order."""
    fields: dict[str, Any] = {"reasoning": (str, Field(description="One or two short sentences of reasoning."))}
    for c in criteria:
        low, high = c.scale
        fields[c.name] = (int, Field(ge=low, le=high, description=f"An integer from {low} to {high}."))
    return create_model("CriteriaVerdict", __config__=ConfigDict(extra="forbid"), **fields)


@dataclass
class CompactJudge(Judge):
    template: Template = field(init=False)

    def __post_init__(self) -> None:
        assert self.config.rubric and self.config.criteria
        self.template = load_template(self.config.rubric)
        self.criteria = tuple(self.config.criteria)
        self.output_model = criteria_output_model(self.criteria)

    def prompt_for(self, item: JudgeInput, candidate: Candidate) -> list[Message]:
        return self.template.render(
            question=render_question(item.prompt),
            answer=delimit(candidate.text, seed=item.seed, judge=self.name),
            reference=item.reference,
            criteria=[{"name": c.name, "low": c.scale[0], "high": c.scale[1], "description": c.description}
                      for c in self.criteria],
            examples=self.config.examples,
        )

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        out = await asyncio.gather(*(self._one(item, c) for c in candidates))
        return [v for verdicts in out for v in verdicts]

    async def _one(self, item: JudgeInput, candidate: Candidate) -> list[Verdict]:
        started = time.perf_counter()
        if self.config.needs_reference and not item.reference:
            return self._verdicts(candidate, "abstain", started, reason="this rubric needs a reference answer")
        logprobs = self.config.score_method == "logprob"
        try:
            replies = await ask_samples(self, self.prompt_for(item, candidate), self.output_model, item.seed)
        except BackendError as exc:
            return self._verdicts(candidate, failure_status(exc), started, reason=str(exc))
        usage = sum((r.usage for r in replies), Usage())
        attempts = sum(r.attempts for r in replies)
        good = [r for r in replies if r.ok]
        if not good:
            reason = reasons(replies) or "no valid reply"
            return self._verdicts(candidate, "invalid", started, reason=reason, usage=usage, attempts=attempts,
                                  raw=replies[0].raw if replies else None)
        scores: dict[str, list[float]] = {c.name: [] for c in self.criteria}
        methods: dict[str, list[dict[str, Any]]] = {c.name: [] for c in self.criteria}
        for r in good:
            for c in self.criteria:
                sampled = float(getattr(r.obj, c.name))
                value, how = score_from(r.completion, c.name, sampled, *c.scale) if logprobs else (sampled, {})
                scores[c.name].append(value)
                if how:
                    methods[c.name].append(how)
        mean = {name: statistics.fmean(values) for name, values in scores.items()}
        common = dict(reasoning=good[0].obj.reasoning, raw=good[0].raw, attempts=attempts)  # type: ignore[union-attr]

        def extras(names: list[str]) -> dict[str, Any]:
            d: dict[str, Any] = {"compact": self.name}
            if self.config.samples > 1:
                d["samples"] = {n: scores[n] for n in names}
                d["spread"] = {n: statistics.pstdev(scores[n]) for n in names}
            if logprobs:
                d["logprob"] = {n: methods[n] for n in names}
            return d

        if not self.config.per_criterion:
            total = sum(mean.values())
            return [self._verdict(
                self.name, candidate, "ok", started, score=round(total, 6),
                normalized=round(self.config.normalize(total), 6), criteria={k: round(v, 6) for k, v in mean.items()},
                usage=usage, details=extras(list(mean)), **common,
            )]
        return [
            self._verdict(
                c.name, candidate, "ok", started, score=round(mean[c.name], 6),
                normalized=round(c.normalize(mean[c.name]), 6), usage=usage if i == 0 else Usage(),
                details=extras([c.name]), **common,
            )
            for i, c in enumerate(self.criteria)
        ]

    def _verdicts(self, candidate: Candidate, status: str, started: float, **kw: Any) -> list[Verdict]:
        names = [c.name for c in self.criteria] if self.config.per_criterion else [self.name]
        usage = kw.pop("usage", Usage())
        return [self._verdict(name, candidate, status, started, usage=usage if i == 0 else Usage(), **kw)
                for i, name in enumerate(names)]

    def _verdict(self, judge: str, candidate: Candidate, status: str, started: float, **kw: Any) -> Verdict:
        return Verdict(
            judge=judge, kind="rubric", candidate_ids=[candidate.id], status=status,
            template_sha256=self.template.sha256, model=self.backend.spec if self.backend else None,
            latency_s=round(time.perf_counter() - started, 4), **kw,
        )
