"""`bestofn build --dry-run`: what a build will call and may cost, before any model is called.

The inputs are read and checked by the build's own reader (inputs.py), the panel's judges are built (templates
loaded, keys checked) and the backends made, without a call. Then, prompt by prompt, each stage's calls, as the
Meter counts them (one per completion):

- generation: n per prompt.
- rubric and compact judges (pointwise): `samples` per distinct candidate, so at most n x samples per prompt
  (duplicates are judged once, and which answers repeat is unknown before generation: an upper bound); none for
  a `needs_reference` judge on a prompt without a reference (it abstains).
- pairwise: both orders of every pair, n(n-1); `knockout`, 2(n-1) (both are exact with n distinct candidates).
- listwise: `shuffles` orders, each one call, or with more candidates than the window the sliding windows of
  every pass until the list is settled or `passes` runs out (a pass that changes nothing ends early): a bound.
- verifiers and consensus: no model call.
- re-asks: a structured reply that fails validation is asked again once (judging/asking.py), so at most one
  more call per judge call (none for the direct and logprob readings, which never re-ask). Shown apart, and
  not in the tokens or money.

Tokens: each call's prompt is the rendered prompt with the candidates at their length limit (`--max-tokens`),
counted by the backend's tokenizer where it has one (Backend.count_tokens), else at 3 bytes a token (the
judging budget's conservative estimate, judging/budget.py), plus chat-template overhead per message (a
template's own default system prompt, SmolLM2's, is not seen: an embedded model's generation prompts run a few
dozen tokens over); every completion at its max_tokens, so the completions, and the money they dominate, are
upper bounds. Money is the price table's (backends/pricing.py), call by call; a model without a price is shown
as unpriced, never as free.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field
from rich.console import Console
from rich.table import Table

from bestofn.apps.build.inputs import Inputs, PromptRow
from bestofn.apps.build.journal import state_dir
from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.backends.pricing import usd_for
from bestofn.config.panel import JudgeConfig, Panel
from bestofn.errors import ConfigError
from bestofn.judging import Judge, JudgeInput, build_judges
from bestofn.judging.budget import BYTES_PER_TOKEN, PER_MESSAGE, budget_for
from bestofn.judging.compact import CompactJudge
from bestofn.judging.direct import TOKENS_PER_SCORE
from bestofn.judging.listwise import ListwiseJudge
from bestofn.judging.pairwise import PairwiseJudge
from bestofn.judging.permutation import labels, window_plan
from bestofn.judging.rubric import RubricJudge
from bestofn.pipeline.select import DEFAULT_MODEL
from bestofn.records import Candidate, Message, Usage

if TYPE_CHECKING:
    from bestofn.apps.build.runner import BuildOptions

PREVIEW = 5  # prompts shown


class StageEstimate(BaseModel):
    """One stage of the build (generation, or one judge of the panel) over the prompts estimated."""

    stage: str  # "generation" or the judge's name
    kind: str  # generation | rubric | compact | pairwise | listwise | verifier | consensus | a third party's kind
    mode: str = ""  # how its calls come about (e.g. "all-pairs", "knockout", "2 shuffles, window 8 step 4")
    model: str | None = None  # the backend's spec; None for a judge that calls no model
    calls: int | None = 0  # None: not known (a third party's judge kind)
    bound: bool = False  # calls is an upper bound, not an exact count
    reasks: int = 0  # at most this many more calls, re-asking invalid replies (not in the tokens or money)
    prompt_tokens: int = 0  # estimated (candidates at their length limit)
    completion_tokens: int = 0  # at most (every completion at its max_tokens)
    tokens_by: str = ""  # "the model's tokenizer" or the byte estimate
    usd: float | None = 0.0  # None: the model has no price
    note: str = ""

    def __add__(self, other: StageEstimate) -> StageEstimate:
        calls = None if self.calls is None or other.calls is None else self.calls + other.calls
        usd = None if self.usd is None or other.usd is None else round(self.usd + other.usd, 12)
        return self.model_copy(update=dict(
            calls=calls, bound=self.bound or other.bound, reasks=self.reasks + other.reasks, usd=usd,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            tokens_by=self.tokens_by or other.tokens_by, note=self.note or other.note,
        ))


class BuildEstimate(BaseModel):
    """What `bestofn build --dry-run` prints: the prompts, then the calls, tokens and money by stage."""

    dry_run: bool = True
    prompts_file: str
    out: str
    input_records: int = 0
    prompts: int = 0  # valid prompts in the input
    done_before: int = 0  # finished by earlier runs of this build (its journal)
    pending: int = 0  # what a build would run now: the estimate covers these
    input_issues: list[str] = Field(default_factory=list)
    preview: list[str] = Field(default_factory=list)  # the first pending prompts, shortened
    n: int
    panel: str
    stages: list[StageEstimate] = Field(default_factory=list)
    calls: int = 0  # over the stages whose calls are known
    calls_bound: bool = False  # some stage's calls are an upper bound
    calls_unknown: list[str] = Field(default_factory=list)  # stages whose calls are not known
    reasks: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None  # over the priced stages; None while none is priced
    unpriced: list[str] = Field(default_factory=list)  # models that make calls and have no price


def _placeholder(index: int) -> Candidate:
    return Candidate(id=f"estimate-{index}", index=index, text="", model="estimate")


class Estimator:
    """The calls, tokens and money of one prompt, stage by stage; made once per build (backends and judges built,
    nothing called). The dry run adds up every pending prompt's; a budget reserves each prompt's before it starts."""

    def __init__(self, opts: BuildOptions, panel: Panel):
        self.opts, self.panel = opts, panel
        self.generator = load_backend(opts.model, opts.base_url)
        self.judges = build_judges(panel, self._backend_for, max_tokens=opts.judge_max_tokens)
        self._tokenizers: dict[int, bool] = {}

    def _backend_for(self, config: JudgeConfig) -> Backend:  # as bestofn.pipeline.select.aselect chooses it
        return load_backend(self.opts.judge_model or config.model or DEFAULT_MODEL, config.base_url or self.opts.base_url)

    def models(self) -> dict[str, Backend]:
        """Who calls which backend: "generation" and each judge that calls a model."""
        found = {"generation": self.generator}
        found.update({j.name: j.backend for j in self.judges if j.backend is not None})
        return found

    def unpriced(self) -> dict[str, Backend]:
        """The stages whose model the price table does not know."""
        probe = Usage(prompt_tokens=1000, completion_tokens=1000)
        return {who: b for who, b in self.models().items() if usd_for(b.spec, probe, b.price) is None}

    def require_prices(self) -> None:
        """--max-usd: every model the build calls needs a price; a ConfigError names the ones without."""
        users: dict[str, list[str]] = {}
        for who, backend in self.unpriced().items():
            users.setdefault(backend.spec, []).append(who)
        if users:
            names = "; ".join(f"{spec} ({', '.join(who)})" for spec, who in users.items())
            raise ConfigError(f"--max-usd needs a price for every model the build calls, and none is known for "
                              f"{names}: set one (bestofn.backends.pricing.set_price or BESTOFN_PRICES) or use "
                              "--max-calls")

    async def _count(self, backend: Backend | None, messages: list[Message]) -> tuple[int, str]:
        overhead = PER_MESSAGE * len(messages)
        if backend is not None:
            key = id(backend)
            if key not in self._tokenizers:
                self._tokenizers[key] = await backend.count_tokens("a") is not None
            if self._tokenizers[key]:
                counts = [await backend.count_tokens(m.content) for m in messages]
                return sum(c or 0 for c in counts) + overhead, "the model's tokenizer"
        size = sum(math.ceil(len(m.content.encode("utf-8", "surrogatepass")) / BYTES_PER_TOKEN) for m in messages)
        return size + overhead, f"estimated at {BYTES_PER_TOKEN} bytes a token"

    async def _stage(self, stage: StageEstimate, backend: Backend | None, shapes: list[tuple[int, Any, int, int]],
                     tokens: bool) -> StageEstimate:
        """Fill in a stage from its calls: (count, the prompt's messages, candidates shown, completion cap)."""
        stage.calls = sum(count for count, *_ in shapes)
        if backend is None:
            return stage
        if not tokens:  # calls only: the money is not worked out
            stage.usd = None
            return stage
        usd: float | None = 0.0
        for count, messages, shown, cap in shapes:
            counted, stage.tokens_by = await self._count(backend, messages)
            usage = Usage(prompt_tokens=counted + shown * self.opts.max_tokens, completion_tokens=cap)
            stage.prompt_tokens += count * usage.prompt_tokens
            stage.completion_tokens += count * usage.completion_tokens
            one = usd_for(backend.spec, usage, backend.price)
            usd = None if one is None or usd is None else usd + count * one
        stage.usd = usd if stage.calls else (0.0 if usd is not None else None)
        return stage

    async def row(self, row: PromptRow, *, tokens: bool = True) -> list[StageEstimate]:
        """This prompt's stages; `tokens=False` counts the calls only (no rendering, no tokenizer, no money)."""
        n = self.opts.n
        generation = StageEstimate(stage="generation", kind="generation", mode=f"n={n} per prompt",
                                   model=self.generator.spec)
        out = [await self._stage(generation, self.generator, [(n, row.messages, 0, self.opts.max_tokens)], tokens)]
        item = JudgeInput(prompt=row.messages, seed=self.opts.seed, reference=row.reference,
                          constraints=row.constraints)
        for judge in self.judges:
            out.append(await self._judge(judge, item, n, tokens))
        return out

    async def _judge(self, judge: Judge, item: JudgeInput, n: int, tokens: bool) -> StageEstimate:
        c = judge.config
        stage = StageEstimate(stage=judge.name, kind=c.kind, model=judge.backend.spec if judge.backend else None)
        if judge.backend is None:
            stage.mode, stage.note = "a program", "no model call"
            return stage
        a, b = _placeholder(0), _placeholder(1)
        if isinstance(judge, (RubricJudge, CompactJudge)):
            stage.kind = "compact" if isinstance(judge, CompactJudge) else "rubric"
            stage.mode = f"{'reasoning' if c.reasoning else 'direct'}, {c.score_method}, samples={c.samples}"
            stage.bound, stage.note = True, "one per distinct candidate: at most n"
            if c.needs_reference:
                stage.note += "; none for a prompt without a reference (it abstains)"
                if not item.reference:
                    return await self._stage(stage, judge.backend, [], tokens)
            fields = len(c.criteria) if isinstance(judge, CompactJudge) else 1
            cap = judge.max_tokens if c.reasoning else min(judge.max_tokens, TOKENS_PER_SCORE * fields)
            count = n * c.samples
            stage.reasks = count if c.reasoning else 0
            prompt = judge.prompt_for(item, a) if tokens else None
            return await self._stage(stage, judge.backend, [(count, prompt, 1, cap)], tokens)
        if isinstance(judge, PairwiseJudge):
            stage.mode = f"{c.mode}, {c.score_method}"
            count = 0 if n < 2 else n * (n - 1) if c.mode == "all-pairs" else 2 * (n - 1)
            stage.note = "both orders of each pair; exact for n distinct candidates"
            logprob = c.score_method == "logprob"
            stage.reasks = 0 if logprob else count
            prompt = judge.prompt_for(item, a, b) if tokens else None
            return await self._stage(stage, judge.backend, [(count, prompt, 2, 1 if logprob else judge.max_tokens)],
                                     tokens)
        if isinstance(judge, ListwiseJudge):
            return await self._listwise(judge, stage, item, n, tokens)
        stage.calls, stage.usd, stage.note = None, None, "a third party's judge kind: its calls are not known"
        return stage

    async def _listwise(self, judge: ListwiseJudge, stage: StageEstimate, item: JudgeInput, n: int,
                        tokens: bool) -> StageEstimate:
        c = judge.config
        stage.bound = True
        window = min(c.window or n, n)
        if tokens:  # the judge shrinks its window until the longest candidates fit its budget: so do we
            budget, _ = budget_for(judge.backend, judge.max_tokens)  # type: ignore[arg-type]
            while window > 2 and await self._window_tokens(judge, item, window) > budget:
                window -= 1
        step = c.step if c.step is not None and c.step < window else max(1, window // 2)
        sizes = [n] if n <= window else _window_sizes(n, window, step, c.passes)
        stage.mode = f"{c.shuffles} shuffles" + (f", window {window} step {step}" if n > window else "")
        stage.note = ("an upper bound: every pass run" if n > window else "one call per order") + \
            (" (fewer distinct candidates: fewer calls)" if n > 2 else "")
        if n < 2:
            return await self._stage(stage, judge.backend, [], tokens)
        shapes = []
        for size in sorted(set(sizes)):
            prompt = judge.prompt_for(item, [_placeholder(i) for i in range(size)], labels(size)) if tokens else None
            shapes.append((c.shuffles * sizes.count(size), prompt, size, judge.max_tokens))
        stage = await self._stage(stage, judge.backend, shapes, tokens)
        stage.reasks = stage.calls or 0
        return stage

    async def _window_tokens(self, judge: ListwiseJudge, item: JudgeInput, window: int) -> int:
        prompt = judge.prompt_for(item, [_placeholder(i) for i in range(window)], labels(window))
        counted, _ = await self._count(judge.backend, prompt)
        return counted + window * self.opts.max_tokens

    async def reserve(self, row: PromptRow, *, money: bool) -> tuple[int, float]:
        """(calls, dollars) a budget holds for this prompt while it runs (re-asks not included)."""
        stages = await self.row(row, tokens=money)
        return sum(s.calls or 0 for s in stages), sum(s.usd or 0.0 for s in stages) if money else 0.0


def _window_sizes(length: int, window: int, step: int, max_passes: int | None) -> list[int]:
    """The sizes of the windows permutation.sliding_windows calls when every pass changes something."""
    sizes: list[int] = []
    settled = passes = 0
    while settled < length and (max_passes is None or passes < max_passes):
        plan = window_plan(length, window, step, settled)
        if not plan:
            break
        passes += 1
        sizes += [size for _, size in plan]
        if len(plan) == 1 and plan[0] == (settled, length - settled):
            break
        settled += window - step
    return sizes


def finished_before(out: str | Path) -> set[str]:
    """The prompt ids an earlier run of this build finished, read from its journal without locking or writing."""
    path = state_dir(out) / "journal.sqlite"
    if not path.is_file():
        return set()
    try:
        conn = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            return {r[0] for r in conn.execute("SELECT prompt_id FROM prompts WHERE status='done'")}
        finally:
            conn.close()
    except sqlite3.Error:  # unreadable: the real build says so; the estimate covers every prompt
        return set()


async def estimate(prompts: str | Path, out: Path, inputs: Inputs, opts: BuildOptions, panel: Panel) -> BuildEstimate:
    """The dry run: every pending prompt's stages added up. Nothing is called, nothing is written."""
    estimator = Estimator(opts, panel)
    if opts.max_usd is not None:  # the error the build would stop at
        estimator.require_prices()
    done = finished_before(out)
    pending = [r for r in inputs.rows if r.id not in done]
    result = BuildEstimate(
        prompts_file=str(prompts), out=str(out), input_records=inputs.records, prompts=len(inputs.rows),
        done_before=len(inputs.rows) - len(pending), pending=len(pending), n=opts.n, panel=panel.name,
        input_issues=[str(i) for i in inputs.issues],
        preview=[f"{r.id} (line {r.line}): {_short(r.messages[-1].content)}" for r in pending[:PREVIEW]],
    )
    totals: list[StageEstimate] | None = None
    for row in pending:
        stages = await estimator.row(row)
        totals = stages if totals is None else [t + s for t, s in zip(totals, stages)]
    result.stages = totals or [s.model_copy(update={"calls": 0, "usd": 0.0}) for s in await _shapes(estimator)]
    for s in result.stages:
        if s.calls is None:
            result.calls_unknown.append(s.stage)
            continue
        result.calls += s.calls
        result.calls_bound |= s.bound and s.calls > 0
        result.reasks += s.reasks
        result.prompt_tokens += s.prompt_tokens
        result.completion_tokens += s.completion_tokens
        if s.usd is None:
            if s.calls and s.model not in result.unpriced:
                result.unpriced.append(s.model or s.stage)
        else:
            result.usd = round((result.usd or 0.0) + s.usd, 12)
    return result


async def _shapes(estimator: Estimator) -> list[StageEstimate]:
    """The stages with no prompt to run (all done): their names and modes, from a one-word prompt."""
    row = PromptRow(id="-", messages=[Message(role="user", content="-")], line=0)
    return await estimator.row(row, tokens=False)


def _short(text: str, width: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def print_estimate(console: Console, e: BuildEstimate) -> None:
    console.print(f"dry run: nothing was called, nothing written. {e.prompts_file}: {e.input_records} records, "
                  f"{e.prompts} valid prompts, {len(e.input_issues)} bad; {e.done_before} done before, "
                  f"{e.pending} to run (n={e.n}, panel {e.panel!r})", markup=False, highlight=False)
    for line in e.preview:
        console.print(f"  {line}", markup=False, highlight=False)
    if e.pending > len(e.preview):
        console.print(f"  ... and {e.pending - len(e.preview)} more", markup=False)
    for line in e.input_issues[:10]:
        console.print(f"input: {line}", markup=False, highlight=False)
    table = Table(title="model calls by stage (estimated; '<=': an upper bound)")
    for column in ("stage", "model", "calls", "re-asks <=", "prompt tokens", "completion tokens <=", "USD"):
        table.add_column(column, justify="left" if column in ("stage", "model") else "right", overflow="fold")

    def calls(value: int | None, bound: bool) -> str:
        return "?" if value is None else f"<= {value:,}" if bound and value else f"{value:,}"

    def money(usd: float | None, calls_: int | None) -> str:
        return "-" if not calls_ else "unpriced" if usd is None else f"${usd:,.6f}"

    for s in e.stages:
        table.add_row(s.stage, s.model or "-", calls(s.calls, s.bound), f"{s.reasks:,}", f"{s.prompt_tokens:,}",
                      f"{s.completion_tokens:,}", money(s.usd, s.calls))
    total = "unpriced" if e.usd is None else f"${e.usd:,.6f}" + (" + unpriced" if e.unpriced else "")
    table.add_row("total", "", calls(e.calls, e.calls_bound) + (" + ?" if e.calls_unknown else ""), f"{e.reasks:,}",
                  f"{e.prompt_tokens:,}", f"{e.completion_tokens:,}", total, style="bold")
    console.print(table)
    for s in e.stages:
        how = ", ".join(x for x in (s.kind if s.kind != s.stage else "", s.mode, s.note) if x)
        console.print(f"  {s.stage}: {how}", markup=False, highlight=False)
    tokens_by = " / ".join(sorted({s.tokens_by for s in e.stages if s.tokens_by})) or "not counted"
    console.print("Calls as the build counts them (one per completion), before any cache hit. Tokens: candidates at "
                  f"--max-tokens, completions at their max_tokens (upper bounds), prompts {tokens_by} (estimates); "
                  "re-asks are not in the "
                  "tokens or money. Money: the price table (bestofn.backends.pricing)"
                  + (f"; no price for {', '.join(e.unpriced)} (set_price or BESTOFN_PRICES)." if e.unpriced else "."),
                  markup=False, highlight=False)


__all__ = ["BuildEstimate", "Estimator", "StageEstimate", "estimate", "finished_before", "print_estimate"]
