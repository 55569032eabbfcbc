"""Pairwise judge: two candidates per call, every pair judged in both orders.

A pair's result is a win only when both orders name the same candidate; any disagreement (each order prefers
whichever answer it saw first, or second) is a tie, and the pair is marked inconsistent: position consistency
is the share of consistent pairs. Modes:

- `all-pairs`: every unordered pair, both orders: n(n-1) calls. Aggregate with Bradley-Terry or win rate.
- `knockout`: a seeded single-elimination bracket (a bye for an odd one out), both orders per match: 2(n-1)
  calls. A tied match is decided by a seeded hash and the details say so. Only the winner is well supported.

One Verdict per pair (kind "pairwise"): candidate_ids = [a, b], `score` and `normalized` are a's points
(1 win, 0.5 tie, 0 loss), `details` holds the winner (an id, or None for a tie), each order's answer and
whether the orders agreed. If either order has no valid reply after its re-ask, the pair is `invalid`.

`score_method = "logprob"` (the template `pairwise_logprob.v1`: the verdict letter alone, no reasoning) reads
the verdict instead of sampling it: one call per order with max_tokens = 1 and `top_logprobs`, and per order
the margin logp("A") - logp("B") at the answer position (the reply's first token), i.e. logp(label of the
answer shown first) - logp(label of the one shown second). Alternatives that spell a label once whitespace is
stripped (" A") add their probability to it. A label missing from the top logprobs is at most the smallest
logprob listed, and is given that value: the margin then understates the preference, never overstates it;
neither label listed, or no logprobs returned at all, makes the pair `invalid`, the reason naming the judge
(never a fallback to a sampled verdict). The pooled margin m = margin(a first) - margin(b first) cancels a
judge's taste for either position; a wins when m > tie_margin, b when m < -tie_margin, else a tie. `score`
is a's points by that rule and `normalized` a's soft win, sigmoid(m) (0.5 for a tie), which win rates and
Bradley-Terry fit for n > 2; details hold m (`margin`), and each order's margin, label logprobs and its own
raw verdict (`said`, `winner`), from which position consistency and P(prefer first) are measured.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from bestofn.backends.base import Completion, SamplingParams
from bestofn.errors import BackendError
from bestofn.judging.asking import Reply, ask_structured
from bestofn.judging.base import DEFAULT_REASONING_TOKENS, Judge, JudgeInput, render_question
from bestofn.judging.budget import check_budget, failure_status
from bestofn.judging.delimiters import delimit
from bestofn.records import Candidate, Message, Verdict, sha256_hex
from bestofn.config.templates import Template, load_template


@lru_cache(maxsize=1)
def pairwise_output_model() -> type[BaseModel]:
    return create_model(
        "PairwiseVerdict",
        __config__=ConfigDict(extra="forbid"),
        reasoning=(str, Field(description="One or two short sentences of reasoning.")),
        winner=(Literal["A", "B", "tie"], Field(description='"A", "B" or "tie".')),
    )


#: the logprob template's verdict letters (single tokens in SmolLM2's and Qwen2.5's tokenizers)
LABELS = ("A", "B")


def _logaddexp(x: float, y: float) -> float:
    high = max(x, y)
    return high + math.log1p(math.exp(-abs(x - y)))


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def label_logprobs(completion: Completion) -> tuple[dict[str, float], list[str]] | str:
    """({label: logprob at the answer position}, labels missing from the top logprobs), or why none can be read.
    The answer position is the reply's first token; see the module docstring for missing labels."""
    if not completion.logprobs or not completion.logprobs[0].top:
        return "the backend returned no top logprobs (score_method = \"logprob\" needs them)"
    top = completion.logprobs[0].top
    found: dict[str, float] = {}
    for token, logprob in top.items():
        label = token.strip()
        if label in LABELS:
            found[label] = logprob if label not in found else _logaddexp(found[label], logprob)
    if not found:
        listed = ", ".join(repr(t) for t in list(top)[:5])
        return (f"neither {' nor '.join(map(repr, LABELS))} is among the {len(top)} top tokens at the answer "
                f"position ({listed})")
    floor = min(top.values())
    missing = [label for label in LABELS if label not in found]
    return {label: found.get(label, floor) for label in LABELS}, missing


def seeded(candidates: list[Candidate], seed: int, judge: str) -> list[Candidate]:
    """A seeded order of the candidates (never their list position)."""
    return sorted(candidates, key=lambda c: sha256_hex("pairwise-order", seed, judge, c.id))


@dataclass
class PairwiseJudge(Judge):
    pointwise = False
    template: Template = field(init=False)

    def __post_init__(self) -> None:
        assert self.config.rubric
        self.template = load_template(self.config.rubric)

    def prompt_for(self, item: JudgeInput, first: Candidate, second: Candidate) -> list[Message]:
        return self.template.render(
            question=render_question(item.prompt),
            answer_a=delimit(first.text, seed=item.seed, judge=self.name),
            answer_b=delimit(second.text, seed=item.seed, judge=self.name),
            reference=item.reference,
            examples=self.config.examples,
        )

    async def _ask(self, item: JudgeInput, first: Candidate, second: Candidate) -> Reply:
        (reply,) = await ask_structured(
            self.backend, self.prompt_for(item, first, second), pairwise_output_model(),  # type: ignore[arg-type]
            max_tokens=self.max_tokens, temperature=self.temperature, seed=item.seed, judge=self.name,
            reasoning_tokens=self.config.reasoning_tokens or DEFAULT_REASONING_TOKENS,
        )
        return reply

    async def _read(self, item: JudgeInput, first: Candidate, second: Candidate) -> Completion:
        """One forward pass and one token: the reply whose first position holds the verdict letter's logprobs."""
        messages = self.prompt_for(item, first, second)
        await check_budget(self.backend, messages, 1, self.name)  # type: ignore[arg-type]
        params = SamplingParams(n=1, temperature=self.temperature, max_tokens=1, seed=item.seed,
                                top_logprobs=self.config.top_logprobs)
        (completion,) = await self.backend.sample(messages, params)  # type: ignore[union-attr]
        return completion

    async def match(self, item: JudgeInput, a: Candidate, b: Candidate, **extra: Any) -> Verdict:
        """Judge a against b in both orders (a first, then b first) and combine."""
        if self.config.score_method == "logprob":
            return await self.pooled(item, a, b, **extra)
        started = time.perf_counter()
        try:
            forward, backward = await asyncio.gather(self._ask(item, a, b), self._ask(item, b, a))
        except BackendError as exc:
            return self._verdict(a, b, failure_status(exc), started, reason=str(exc), details=extra)
        usage = forward.usage + backward.usage
        said = [r.obj.winner if r.ok else None for r in (forward, backward)]  # type: ignore[attr-defined]
        picks = [
            {"A": a.id, "B": b.id, "tie": None}.get(said[0] or "", None),
            {"A": b.id, "B": a.id, "tie": None}.get(said[1] or "", None),
        ]
        orders = [
            {"first": a.id, "second": b.id, "said": said[0], "winner": picks[0]},
            {"first": b.id, "second": a.id, "said": said[1], "winner": picks[1]},
        ]
        attempts = forward.attempts + backward.attempts
        if not (forward.ok and backward.ok):
            reasons = [f"{name}: {r.problem}" for name, r in (("a-first", forward), ("b-first", backward)) if not r.ok]
            return self._verdict(a, b, "invalid", started, reason="; ".join(reasons), usage=usage, attempts=attempts,
                                 raw=forward.raw, details={"orders": orders, **extra})
        consistent = picks[0] == picks[1]
        winner = picks[0] if consistent else None
        points = 1.0 if winner == a.id else 0.0 if winner == b.id else 0.5
        return self._verdict(
            a, b, "ok", started, score=points, normalized=points, usage=usage, attempts=attempts,
            reasoning=forward.obj.reasoning, raw=forward.raw,  # type: ignore[union-attr]
            details={"winner": winner, "consistent": consistent, "orders": orders, **extra},
        )

    async def pooled(self, item: JudgeInput, a: Candidate, b: Candidate, **extra: Any) -> Verdict:
        """Both orders' logprob margins pooled into one decision (score_method = "logprob")."""
        started = time.perf_counter()
        try:
            replies = await asyncio.gather(self._read(item, a, b), self._read(item, b, a))
        except BackendError as exc:
            return self._verdict(a, b, failure_status(exc), started, reason=f"judge {self.name!r}: {exc}",
                                 details=extra)
        usage = replies[0].usage + replies[1].usage
        orders, problems = [], []
        for (name, first, second), reply in zip((("a-first", a, b), ("b-first", b, a)), replies):
            order: dict[str, Any] = {"first": first.id, "second": second.id, "said": None, "winner": None}
            read = label_logprobs(reply)
            if isinstance(read, str):
                problems.append(f"{name}: {read}")
            else:
                logprobs, missing = read
                margin = logprobs[LABELS[0]] - logprobs[LABELS[1]]
                said = LABELS[0] if margin > 0 else LABELS[1] if margin < 0 else "tie"
                order.update(said=said, winner={LABELS[0]: first.id, LABELS[1]: second.id}.get(said),
                             margin=round(margin, 6), logprobs={k: round(x, 6) for k, x in logprobs.items()},
                             **({"missing": missing} if missing else {}))
            orders.append(order)
        if problems:
            return self._verdict(a, b, "invalid", started, reason=f"judge {self.name!r}: " + "; ".join(problems),
                                 usage=usage, raw=replies[0].text, details={"orders": orders, **extra})
        m = round(orders[0]["margin"] - orders[1]["margin"], 6)
        tie = abs(m) <= self.config.tie_margin
        winner = None if tie else a.id if m > 0 else b.id
        points = 0.5 if tie else 1.0 if m > 0 else 0.0
        soft = 0.5 if tie else sigmoid(m)
        return self._verdict(
            a, b, "ok", started, score=points, normalized=soft, usage=usage, raw=replies[0].text,
            details={"score_method": "logprob", "margin": m, "winner": winner,
                     "consistent": orders[0]["winner"] == orders[1]["winner"], "orders": orders, **extra},
        )

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        if len(candidates) < 2:
            return [Verdict(judge=self.name, kind="pairwise", candidate_ids=[c.id], status="abstain",
                            reason="only one distinct candidate: nothing to compare it with",
                            template_sha256=self.template.sha256) for c in candidates]
        order = seeded(candidates, item.seed, self.name)
        if self.config.mode == "knockout":
            return await self.knockout(item, order)
        return list(await asyncio.gather(*(self.match(item, a, b) for a, b in itertools.combinations(order, 2))))

    async def knockout(self, item: JudgeInput, order: list[Candidate]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        alive, round_no = order, 1
        while len(alive) > 1:
            pairs = [(alive[i], alive[i + 1]) for i in range(0, len(alive) - 1, 2)]
            results = await asyncio.gather(*(self.match(item, a, b, round=round_no) for a, b in pairs))
            advancing = []
            for (a, b), verdict in zip(pairs, results):
                winner = verdict.details.get("winner") if verdict.status == "ok" else None
                if winner is None:  # a tie or a failed match: a seeded coin decides who goes on
                    winner = min((a.id, b.id), key=lambda cid: sha256_hex("knockout-tiebreak", item.seed, cid))
                    verdict = verdict.model_copy(update={"details": {**verdict.details, "advanced_by": "tiebreak"}})
                advancing.append(a if winner == a.id else b)
                verdicts.append(verdict)
            if len(alive) % 2:
                advancing.append(alive[-1])  # a bye
            alive, round_no = advancing, round_no + 1
        return verdicts

    def _verdict(self, a: Candidate, b: Candidate, status: str, started: float, **kw: Any) -> Verdict:
        return Verdict(
            judge=self.name, kind="pairwise", candidate_ids=[a.id, b.id], status=status,
            template_sha256=self.template.sha256, model=self.backend.spec if self.backend else None,
            latency_s=round(time.perf_counter() - started, 4), **kw,
        )
