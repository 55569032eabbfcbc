"""Pointwise rubric judge: the question and one candidate in, reasoning then an integer score out."""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field

from pydantic import BaseModel

from bestofn.backends.base import Completion, SamplingParams
from bestofn.errors import BackendError
from bestofn.judging.base import Judge, JudgeInput, render_question
from bestofn.judging.budget import check_budget, failure_status
from bestofn.judging.delimiters import delimit
from bestofn.judging.logprob import score_from
from bestofn.judging.structured import json_schema, parse_reply, rubric_output_model
from bestofn.records import Candidate, Message, Usage, Verdict
from bestofn.templates import Template, load_template

REASK_TEMPLATE = "_reask.v1"


@dataclass
class RubricJudge(Judge):
    template: Template = field(init=False)

    def __post_init__(self) -> None:
        assert self.config.rubric
        self.template = load_template(self.config.rubric)
        self.reask = load_template(REASK_TEMPLATE)
        self.output_model = rubric_output_model(*self.config.scale)
        self.schema = json_schema(self.output_model)

    def prompt_for(self, item: JudgeInput, candidate: Candidate) -> list[Message]:
        low, high = self.config.scale
        return self.template.render(
            question=render_question(item.prompt),
            answer=delimit(candidate.text, seed=item.seed, judge=self.name),
            reference=item.reference,
            low=low,
            high=high,
            examples=self.config.examples,
        )

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        return list(await asyncio.gather(*(self._judge_one(item, c) for c in candidates)))

    async def _ask(self, messages: list[Message], n: int, seed: int) -> list[Completion]:
        assert self.backend is not None
        params = SamplingParams(
            n=n, temperature=self.temperature, max_tokens=self.max_tokens, seed=seed, json_schema=self.schema,
            top_logprobs=self.config.top_logprobs if self.config.score_method == "logprob" else None,
        )
        await check_budget(self.backend, messages, self.max_tokens, self.name)  # too long: an error verdict, no cut
        return await self.backend.sample(messages, params)

    async def _judge_one(self, item: JudgeInput, candidate: Candidate) -> Verdict:
        started = time.perf_counter()
        if self.config.needs_reference and not item.reference:
            return self._verdict(candidate, "abstain", reason="this rubric needs a reference answer", started=started)
        messages = self.prompt_for(item, candidate)
        usage, attempts, reasons = Usage(), 0, []
        parsed: list[tuple[BaseModel, Completion]] = []
        try:
            replies = await self._ask(messages, self.config.samples, item.seed)
            attempts += 1
            for reply in replies:
                usage += reply.usage
                obj, why = parse_reply(reply.text, reply.finish_reason, self.output_model)
                if obj is None:  # one re-ask, with the reason, then give up on this sample
                    reasons.append(why)
                    retry = messages + [
                        Message(role="assistant", content=reply.text),
                        *self.reask.render(error=why, low=self.config.scale[0], high=self.config.scale[1]),
                    ]
                    (reply,) = await self._ask(retry, 1, item.seed + 1)
                    attempts += 1
                    usage += reply.usage
                    obj, why = parse_reply(reply.text, reply.finish_reason, self.output_model)
                    if obj is None:
                        reasons.append(why)
                if obj is not None:
                    parsed.append((obj, reply))
        except BackendError as exc:
            return self._verdict(candidate, failure_status(exc), reason=str(exc), usage=usage, started=started,
                                 attempts=attempts)
        if not parsed:
            return self._verdict(
                candidate, "invalid", reason="; ".join(r for r in reasons if r), usage=usage, started=started,
                attempts=attempts, raw=replies[0].text if replies else None,
            )
        scores = [float(obj.score) for obj, _ in parsed]  # type: ignore[attr-defined]
        details: dict = {}
        if self.config.score_method == "logprob":  # G-Eval: the expected score over the score tokens
            weighted = [score_from(c, "score", s, *self.config.scale) for (_, c), s in zip(parsed, scores)]
            scores, details["logprob"] = [w for w, _ in weighted], [how for _, how in weighted]
        score = statistics.fmean(scores)
        if self.config.samples > 1:
            details.update(samples=scores, spread=statistics.pstdev(scores))
        return self._verdict(
            candidate, "ok", score=score, reasoning=parsed[0][0].reasoning, raw=parsed[0][1].text,  # type: ignore[attr-defined]
            usage=usage, started=started, attempts=attempts, details=details,
        )

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
