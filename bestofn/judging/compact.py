"""Several criteria in one structured call per candidate (a rubric judge with `criteria`).

The reply is {"reasoning": ..., "<criterion>": int, ...}, each integer validated against its criterion's own
range. With `per_criterion = true` the judge yields one Verdict per criterion (judge = the criterion's name,
kind "rubric"), so a `compact` panel's output reads like the default panel's with a quarter of the calls.
Otherwise it yields one Verdict whose score is the total (a classic reranking rubric: direct answer 0-5,
completeness 0-3, factual accuracy 0-2) with the parts in `criteria`.

A call's usage is recorded once, on the first verdict it produced. `samples` > 1 averages each criterion over
the samples (spread in details); `score_method = "logprob"` takes each criterion's expected score over its score
tokens where the backend returns logprobs (see logprob.py). With `reasoning = false` the reply is the scores
alone, one `name: N` line per criterion in the panel's order, and with logprobs each criterion's distribution is
read in turn where its score stands, after the scores sampled before it (bestofn.judging.direct).
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, create_model

from bestofn.errors import BackendError
from bestofn.judging.asking import ask_samples, reasons
from bestofn.judging.base import Judge, JudgeInput, render_question
from bestofn.judging.budget import failure_status
from bestofn.judging.delimiters import delimit
from bestofn.judging.direct import ask_direct, require_flag
from bestofn.judging.logprob import score_from
from bestofn.config.panel import Criterion
from bestofn.records import Candidate, Message, Usage, Verdict
from bestofn.config.templates import Template, load_template


@lru_cache(maxsize=64)
def criteria_output_model(criteria: tuple[Criterion, ...]) -> type[BaseModel]:
    """Reasoning first, then one integer per criterion on its own range, in the panel's order. Made once per
    criteria (the judges are built per selection; a model and its JSON schema take about a millisecond)."""
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
        if not self.config.reasoning:
            require_flag(self.template)

    def prompt_for(self, item: JudgeInput, candidate: Candidate) -> list[Message]:
        return self.template.render(
            question=render_question(item.prompt),
            answer=delimit(candidate.text, seed=item.seed, judge=self.name),
            reference=item.reference,
            criteria=[{"name": c.name, "low": c.scale[0], "high": c.scale[1], "description": c.description}
                      for c in self.criteria],
            examples=self.config.examples,
            reasoning=self.config.reasoning,
        )

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        if len(candidates) == 1:  # the pipeline's usual call: no task to spawn and gather
            return await self._one(item, candidates[0])
        out = await asyncio.gather(*(self._one(item, c) for c in candidates))
        return [v for verdicts in out for v in verdicts]

    async def _one(self, item: JudgeInput, candidate: Candidate) -> list[Verdict]:
        started = time.perf_counter()
        if self.config.needs_reference and not item.reference:
            return self._verdicts(candidate, "abstain", started, reason="this rubric needs a reference answer")
        logprobs = self.config.score_method == "logprob"
        try:
            read, usage, common, problem = await self._read(self.prompt_for(item, candidate), item.seed)
        except BackendError as exc:
            return self._verdicts(candidate, failure_status(exc), started, reason=str(exc))
        if problem is not None:
            return self._verdicts(candidate, "invalid", started, reason=problem, usage=usage, **common)
        scores = {name: [value for value, _ in pairs] for name, pairs in read.items()}
        methods = {name: [how for _, how in pairs if how] for name, pairs in read.items()}
        mean = {name: statistics.fmean(values) for name, values in scores.items()}

        def extras(names: list[str]) -> dict[str, Any]:
            d: dict[str, Any] = {"compact": self.name, **({} if self.config.reasoning else {"reasoning": False})}
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

    async def _read(self, messages: list[Message], seed: int) -> tuple[
            dict[str, list[tuple[float, dict[str, Any]]]], Usage, dict[str, Any], str | None]:
        """Each criterion's (score, how it was read) per valid sample, the usage, the verdict fields the samples
        share (raw, attempts, reasoning), and what is wrong when no sample is valid."""
        logprobs = self.config.score_method == "logprob"
        read: dict[str, list[tuple[float, dict[str, Any]]]] = {c.name: [] for c in self.criteria}
        if not self.config.reasoning:  # the scores alone, each read where it stands
            direct = await ask_direct(self, messages, [(c.name, *c.scale) for c in self.criteria], seed, bare=False)
            usage, attempts = sum((r.completion.usage for r in direct), Usage()), len(direct)
            good_direct = [r for r in direct if r.problem is None]
            raw = (good_direct or direct)[0].completion.text if direct else None
            for d in good_direct:
                for c in self.criteria:
                    read[c.name].append((d.scores[c.name], d.how.get(c.name, {})))
            problem = None if good_direct else "; ".join(dict.fromkeys(r.problem or "" for r in direct))
            return read, usage, {"raw": raw, "attempts": attempts}, problem
        replies = await ask_samples(self, messages, self.output_model, seed)
        usage, attempts = sum((r.usage for r in replies), Usage()), sum(r.attempts for r in replies)
        good = [r for r in replies if r.ok]
        if not good:
            raw = replies[0].raw if replies else None
            return read, usage, {"raw": raw, "attempts": attempts}, reasons(replies) or "no valid reply"
        for r in good:
            for c in self.criteria:
                sampled = float(getattr(r.obj, c.name))
                read[c.name].append(score_from(r.completion, c.name, sampled, *c.scale) if logprobs else (sampled, {}))
        common = dict(reasoning=good[0].obj.reasoning, raw=good[0].raw, attempts=attempts)  # type: ignore[union-attr]
        return read, usage, common, None

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
