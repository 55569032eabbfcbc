"""Listwise judge: all candidates in one call, a permutation back as structured output.

- The reply is {"ranking": [labels]}; the grammar holds it to the labels (an enum) and the length, and
  `permutation_problem` checks that every label occurs exactly once. A broken permutation gets one re-ask;
  what is still broken is repaired (first occurrences kept, missing labels appended in shown order) and
  counted, never trusted as it came.
- `shuffles` (k) orders are judged and averaged to cancel position bias: a seeded order, its reverse, then
  more seeded orders.
- When the candidates don't fit one call (more than `window`, or more than the judge's token budget holds: the
  window shrinks until the longest candidates fit), RankGPT-style sliding windows sort the whole list in
  several passes (permutation.sliding_windows).

One Verdict per candidate (kind "listwise"): `score` is the mean number of candidates ranked below it,
`normalized` that over n - 1 (1 = always first), `details` the rank and shown position in every order.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from bestofn.backends.base import Backend
from bestofn.errors import BackendError
from bestofn.judging.asking import ask_structured
from bestofn.judging.budget import PromptTooLongError, check_budget, failure_status
from bestofn.judging.base import Judge, JudgeInput, render_question
from bestofn.judging.delimiters import delimit
from bestofn.judging.permutation import (
    labels, permutation_model, permutation_problem, repair, sliding_windows, to_indices,
)
from bestofn.records import Candidate, Message, Usage, Verdict, sha256_hex
from bestofn.config.templates import Template, load_template


@dataclass
class WindowTally:
    """What the windows of one ranking cost and met: backend calls, windows re-asked, repaired, failed (nothing
    parsed even after the re-ask: the window kept its incoming order), and every problem seen."""

    calls: int = 0
    reasked: int = 0
    repaired: int = 0
    failed: int = 0
    usage: Usage = field(default_factory=Usage)
    problems: list[str] = field(default_factory=list)


async def rank_window(
    backend: Backend, messages: list[Message], window_labels: list[str], tally: WindowTally, *,
    max_tokens: int, temperature: float, seed: int, judge: str = "judge",
) -> list[int]:
    """One window's ask-and-repair step: ask for {"ranking": [labels]}, re-ask a broken permutation once, repair
    what is still broken (counted, never trusted as it came). Returns a best-first permutation of the window's
    indices; a window with nothing parsed keeps its incoming order. Backend errors propagate."""
    (reply,) = await ask_structured(
        backend, messages, permutation_model(window_labels), max_tokens=max_tokens, temperature=temperature,
        seed=seed, judge=judge,
        check=lambda obj: permutation_problem(obj.ranking, window_labels),  # type: ignore[attr-defined]
    )
    tally.calls += reply.attempts
    tally.usage += reply.usage
    tally.reasked += reply.attempts > 1
    tally.problems.extend(reply.problems)
    if reply.obj is None:  # nothing parsed even after the re-ask: this window teaches nothing
        tally.failed += 1
        return list(range(len(window_labels)))
    ranked = reply.obj.ranking  # type: ignore[attr-defined]
    if reply.problem is not None:
        tally.repaired += 1
        ranked = repair(ranked, window_labels)
    return to_indices(ranked, window_labels)


def orders(candidates: list[Candidate], k: int, seed: int, judge: str) -> list[list[Candidate]]:
    """k presentation orders: a seeded shuffle, its reverse, then further seeded shuffles (never list order)."""
    rng = random.Random(sha256_hex("listwise-orders", seed, judge, sorted(c.id for c in candidates)))
    first = sorted(candidates, key=lambda c: c.id)
    rng.shuffle(first)
    out = [first, first[::-1]]
    while len(out) < k:
        again = first[:]
        rng.shuffle(again)
        out.append(again)
    return out[:k]


@dataclass
class ListwiseJudge(Judge):
    pointwise = False
    template: Template = field(init=False)

    def __post_init__(self) -> None:
        assert self.config.rubric
        self.template = load_template(self.config.rubric)

    def prompt_for(self, item: JudgeInput, chunk: list[Candidate], window_labels: list[str]) -> list[Message]:
        answers = [
            {"label": label, "text": delimit(c.text, seed=item.seed, judge=self.name)}
            for label, c in zip(window_labels, chunk)
        ]
        return self.template.render(
            question=render_question(item.prompt), answers=answers, labels=window_labels,
            reference=item.reference, examples=self.config.examples,
        )

    async def _rank_window(self, item: JudgeInput, chunk: list[Candidate], tally: WindowTally, seed: int) -> list[int]:
        window_labels = labels(len(chunk))
        return await rank_window(
            self.backend, self.prompt_for(item, chunk, window_labels), window_labels, tally,  # type: ignore[arg-type]
            max_tokens=self.max_tokens, temperature=self.temperature, seed=seed, judge=self.name,
        )

    async def fit_window(self, item: JudgeInput, candidates: list[Candidate]) -> int:
        """The configured window (default: every candidate), shrunk until a window of the longest candidates
        fits the judge's token budget: when the candidates don't fit one call, sliding windows take over.
        Raises PromptTooLongError when not even two of them fit."""
        longest = sorted(candidates, key=lambda c: (-len(c.text), c.id))
        window = min(self.config.window or len(candidates), len(candidates))
        while True:
            chunk = longest[:window]
            try:
                await check_budget(self.backend, self.prompt_for(item, chunk, labels(window)),  # type: ignore[arg-type]
                                   self.max_tokens, self.name)
                return window
            except PromptTooLongError:
                if window <= 2:
                    raise
                window -= 1

    async def _one_order(
        self, item: JudgeInput, order: list[Candidate], index: int, window: int
    ) -> tuple[list[Candidate], WindowTally, dict]:
        tally = WindowTally()
        seed = item.seed + 1000 * index
        calls = 0

        async def rank(chunk: list[Candidate]) -> list[int]:
            nonlocal calls
            calls += 1
            return await self._rank_window(item, chunk, tally, seed + 10 * calls)

        step = self.config.step if self.config.step is not None and self.config.step < window else None
        result = await sliding_windows(
            order, rank, window=window, step=step, max_passes=self.config.passes
        ) if len(order) > window else None
        if result is None:
            permutation = await rank(order)
            final, info = [order[i] for i in permutation], {"windows": 1, "passes": 1, "sorted_fully": True}
        else:
            final = result.order
            info = {"windows": result.calls, "passes": result.passes, "sorted_fully": result.sorted_fully}
        return final, tally, {**info, "window": window, "failed_windows": tally.failed}

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        started = time.perf_counter()
        if len(candidates) < 2:
            reason = "only one distinct candidate: nothing to rank it against"
            return [self._verdict(c, "abstain", started, reason=reason) for c in candidates]
        shown = orders(candidates, self.config.shuffles, item.seed, self.name)
        try:
            window = await self.fit_window(item, candidates)
            runs = await asyncio.gather(*(self._one_order(item, order, i, window) for i, order in enumerate(shown)))
        except BackendError as exc:
            return [self._verdict(c, failure_status(exc), started, reason=str(exc)) for c in candidates]
        usage = Usage()
        for _, tally, _ in runs:
            usage += tally.usage
        valid = [(order, run) for order, run in zip(shown, runs) if run[2]["failed_windows"] < run[2]["windows"]]
        summary: dict[str, Any] = {
            "shuffles": len(shown),
            "valid_shuffles": len(valid),
            "calls": sum(t.calls for _, t, _ in runs),
            "repaired": sum(t.repaired for _, t, _ in runs),
            "reasked": sum(t.reasked for _, t, _ in runs),
            "runs": [info for _, _, info in runs],
        }
        if not valid:
            problems = "; ".join(dict.fromkeys(p for _, t, _ in runs for p in t.problems)) or "no usable ranking"
            return [self._verdict(c, "invalid", started, reason=problems, usage=usage if i == 0 else Usage(),
                                  details=summary) for i, c in enumerate(candidates)]
        n = len(candidates)
        verdicts = []
        for i, c in enumerate(candidates):
            ranks = [next(r for r, x in enumerate(run[0]) if x.id == c.id) for _, run in valid]
            positions = [next(p for p, x in enumerate(order) if x.id == c.id) for order, _ in valid]
            below = statistics.fmean(n - 1 - r for r in ranks)
            verdicts.append(self._verdict(
                c, "ok", started, score=round(below, 6), normalized=round(below / (n - 1), 6),
                usage=usage if i == 0 else Usage(),
                details={"ranks": ranks, "shown": positions, **summary},
            ))
        return verdicts

    def _verdict(self, candidate: Candidate, status: str, started: float, **kw: Any) -> Verdict:
        return Verdict(
            judge=self.name, kind="listwise", candidate_ids=[candidate.id], status=status,
            template_sha256=self.template.sha256, model=self.backend.spec if self.backend else None,
            latency_s=round(time.perf_counter() - started, 4), **kw,
        )
