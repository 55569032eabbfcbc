"""How a prompt's candidates are generated and judged, on which schedule: the pipeline's three paths.

- `judge_all`: every judge on the unique candidates, judge by judge, candidate last (a serial backend, llama.cpp,
  reuses the KV cache of the shared rubric-and-question prefix).
- `generate_and_judge`: each candidate is judged as soon as it exists, by the pointwise judges whose backends take
  concurrent calls; the rest run once all candidates exist, in `judge_all`'s order.
- waves (bestofn.pipeline.early_stop): sample a few, judge them, stop once one clears a threshold.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Callable

from bestofn.backends.base import Backend, innermost
from bestofn.judging import Judge, JudgeInput
from bestofn.pipeline.generate import mark_duplicates, stream_candidates
from bestofn.records import Candidate, Verdict

#: progress(stage, done, total): stage is "generate" or "judge"
Progress = Callable[[str, int, int], None]


async def judge_all(
    judges: list[Judge], item: JudgeInput, candidates: list[Candidate], progress: Progress | None = None
) -> list[Verdict]:
    """Run every judge on the unique candidates (a judge that counts copies, consensus, on all of them).
    Pointwise calls are submitted judge by judge, candidate last,
    so that a serial backend (llama.cpp) reuses the KV cache of the shared rubric-and-question prefix."""
    unique = [c for c in candidates if c.duplicate_of is None]
    jobs = []
    for judge in judges:
        if judge.pointwise:
            jobs.extend(judge.judge(item, [c]) for c in unique)
        else:
            jobs.append(judge.judge(item, candidates if judge.sees_duplicates else unique))
    done, total = 0, len(jobs)
    if progress:
        progress("judge", 0, total)

    async def tracked(job: Any) -> list[Verdict]:
        nonlocal done
        out = await job
        done += 1
        if progress:
            progress("judge", done, total)
        return out

    results = await asyncio.gather(*(tracked(j) for j in jobs))
    return [v for verdicts in results for v in verdicts]


async def generate_and_judge(
    generator: Backend,
    judges: list[Judge],
    item: JudgeInput,
    *,
    n: int,
    temperature: float,
    max_tokens: int,
    progress: Progress | None = None,
) -> tuple[list[Candidate], list[Verdict], float]:
    """Generate n candidates and judge each one as soon as it arrives, by every pointwise judge whose backend
    takes concurrent calls. Judges on a serial backend (and listwise judges) run once all candidates exist,
    judge by judge, candidate last, as in `judge_all`. Returns (candidates in sampling order, verdicts in
    `judge_all`'s order, the time generation ended)."""
    # A backend may learn its traits on first contact (a server's flavour: whether it is serial): let the judges'
    # backends do so while the generator works, and decide which judges go early once the first candidate exists.
    settled = asyncio.ensure_future(_settle([j.backend for j in judges if j.backend is not None]))
    early: list[Judge] | None = None
    tasks: list[asyncio.Future[tuple[Judge, list[Candidate], list[Verdict]]]] = []
    done = 0

    async def run(judge: Judge, candidates: list[Candidate]) -> tuple[Judge, list[Candidate], list[Verdict]]:
        nonlocal done
        verdicts = await judge.judge(item, candidates)
        done += 1
        if progress:
            progress("judge", done, len(tasks))
        return judge, candidates, verdicts

    arrived: list[Candidate] = []
    seen: set[str] = set()
    try:
        async for candidate in stream_candidates(
            generator, item.prompt, n=n, temperature=temperature, max_tokens=max_tokens, seed=item.seed
        ):
            arrived.append(candidate)
            if progress:
                progress("generate", len(arrived), n)
            if early is None:
                await settled
                early = [j for j in judges if j.pointwise and not (j.backend is not None and j.backend.serial)]
            if candidate.id not in seen:
                seen.add(candidate.id)
                tasks.extend(asyncio.ensure_future(run(j, [candidate])) for j in early)
        generated = time.perf_counter()
        early = early or []
        candidates = mark_duplicates(arrived)
        unique = [c for c in candidates if c.duplicate_of is None]
        for judge in judges:
            if any(judge is e for e in early):
                continue
            if judge.pointwise:
                tasks.extend(asyncio.ensure_future(run(judge, [c])) for c in unique)
            else:
                tasks.append(asyncio.ensure_future(run(judge, candidates if judge.sees_duplicates else unique)))
        if progress:
            progress("judge", done, len(tasks))
        results = await asyncio.gather(*tasks)
    except BaseException:
        settled.cancel()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise
    # judge_all's order: panel order, then the first sample index of the (first) candidate judged
    judge_rank = {id(j): k for k, j in enumerate(judges)}
    first_index = {c.id: c.index for c in unique}
    results.sort(key=lambda r: (judge_rank[id(r[0])], first_index[r[1][0].id] if r[1] else 0))
    return candidates, [v for _, _, verdicts in results for v in verdicts], generated


async def _settle(backends: list[Backend]) -> None:
    """Await `resolve()` once per backend (e.g. `vllm:` asks the server its flavour; most have nothing to learn);
    a failure here is left for the real call to report."""
    unique = {id(b): b for b in map(innermost, backends)}
    await asyncio.gather(*(b.resolve() for b in unique.values()), return_exceptions=True)
