"""Pointwise rubric judge: the question and one candidate in, reasoning then an integer score out (or, with
`reasoning = false`, the score alone: bestofn.judging.direct)."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from bestofn.errors import BackendError
from bestofn.judging.asking import ask_samples, reasons
from bestofn.judging.base import Judge, JudgeInput, render_question
from bestofn.judging.budget import failure_status
from bestofn.judging.delimiters import delimit
from bestofn.judging.direct import ask_direct, require_flag
from bestofn.judging.logprob import score_from
from bestofn.judging.structured import rubric_output_model
from bestofn.records import Candidate, Message, Usage, Verdict
from bestofn.config.templates import Template, load_template


@dataclass
class RubricJudge(Judge):
    template: Template = field(init=False)

    def __post_init__(self) -> None:
        assert self.config.rubric
        self.template = load_template(self.config.rubric)
        self.output_model = rubric_output_model(*self.config.scale)
        if not self.config.reasoning:
            require_flag(self.template)

    def prompt_for(self, item: JudgeInput, candidate: Candidate) -> list[Message]:
        low, high = self.config.scale
        return self.template.render(
            question=render_question(item.prompt),
            answer=delimit(candidate.text, seed=item.seed, judge=self.name),
            reference=item.reference,
            low=low,
            high=high,
            examples=self.config.examples,
            reasoning=self.config.reasoning,
        )

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        if len(candidates) == 1:  # the pipeline's usual call: no task to spawn and gather
            return [await self._judge_one(item, candidates[0])]
        return list(await asyncio.gather(*(self._judge_one(item, c) for c in candidates)))

    async def _judge_one(self, item: JudgeInput, candidate: Candidate) -> Verdict:
        started = time.perf_counter()
        if self.config.needs_reference and not item.reference:
            return self._verdict(candidate, "abstain", reason="this rubric needs a reference answer", started=started)
        if not self.config.reasoning:
            return await self._judge_direct(item, candidate, started)
        try:
            replies = await ask_samples(self, self.prompt_for(item, candidate), self.output_model, item.seed)
        except BackendError as exc:  # too long for the judge: an invalid verdict, nothing cut; else an error
            return self._verdict(candidate, failure_status(exc), reason=str(exc), started=started, attempts=0)
        usage = sum((r.usage for r in replies), Usage())
        attempts = 1 + sum(r.attempts - 1 for r in replies)  # the call for all samples, then each re-ask
        good = [r for r in replies if r.ok]
        if not good:
            return self._verdict(candidate, "invalid", reason=reasons(replies), usage=usage, started=started,
                                 attempts=attempts, raw=replies[0].raw if replies else None)
        scores = [float(r.obj.score) for r in good]  # type: ignore[union-attr]
        details: dict = {}
        if cut := sum(r.completion.finish_reason == "budget" for r in good):  # type: ignore[union-attr]
            details["reasoning_cut"] = cut  # replies whose reasoning the backend ended at the budget
        if self.config.score_method == "logprob":  # G-Eval: the expected score over the score tokens
            weighted = [score_from(r.completion, "score", s, *self.config.scale) for r, s in zip(good, scores)]
            scores, details["logprob"] = [w for w, _ in weighted], [how for _, how in weighted]
        score = statistics.fmean(scores)
        if self.config.samples > 1:
            details.update(samples=scores, spread=statistics.pstdev(scores))
        return self._verdict(
            candidate, "ok", score=score, reasoning=good[0].obj.reasoning, raw=good[0].raw,  # type: ignore[union-attr]
            usage=usage, started=started, attempts=attempts, details=details,
        )

    async def _judge_direct(self, item: JudgeInput, candidate: Candidate, started: float) -> Verdict:
        """The score first, no reasoning: one short reply per sample, its distribution read where it stands."""
        try:
            replies = await ask_direct(self, self.prompt_for(item, candidate), [("score", *self.config.scale)],
                                       item.seed, bare=True)
        except BackendError as exc:
            return self._verdict(candidate, failure_status(exc), reason=str(exc), started=started, attempts=0)
        usage = sum((r.completion.usage for r in replies), Usage())
        good = [r for r in replies if r.problem is None]
        if not good:
            return self._verdict(candidate, "invalid", reason="; ".join(dict.fromkeys(r.problem for r in replies)),
                                 usage=usage, started=started, raw=replies[0].completion.text if replies else None)
        scores = [r.scores["score"] for r in good]
        details: dict = {"reasoning": False}
        if self.config.score_method == "logprob":
            details["logprob"] = [r.how["score"] for r in good]
        if self.config.samples > 1:
            details.update(samples=scores, spread=statistics.pstdev(scores))
        return self._verdict(candidate, "ok", score=statistics.fmean(scores), raw=good[0].completion.text,
                             usage=usage, started=started, details=details)

    def _verdict(self, candidate: Candidate, status: str, *, started: float, score: float | None = None, **kw) -> Verdict:
        return Verdict(
            judge=self.name,
            kind="rubric",
            candidate_ids=[candidate.id],
            status=status,
            score=score,
            normalized=None if score is None else round(self.config.normalize(score), 6),
            template_sha256=self.template.sha256,
            model=self.backend.spec if self.backend else None,
            latency_s=time.perf_counter() - started,
            **kw,
        )
