"""Run a judge panel over a gold set with the pipeline's own pieces (build_judges, judge_all, aggregate).

A gold response becomes a Candidate with id `text_id(text)`; nothing is generated.

Pairwise gold, pointwise panels (rubric judges): each response is judged once per judge; the panel's aggregate
ranking decides (`Aggregate.compare`: the very order `bestofn run` picks its best by), equal but for the seeded
hash = tie. Both presentation orders go through the aggregation step, so an order effect in ranking would show;
a pointwise judge never sees the two responses together, so its position consistency is 100% by construction
(the report says so).

Pairwise gold, panels with judges that see both answers at once: the pairwise judge already asks in both
orders (and a listwise one over shuffles) and records each order in its verdict's details; the final decision
is the panel's own (for a pairwise judge, disagreement between the orders is a tie), and each single order's
decision is the aggregate over the verdicts as that order alone would have left them (`single_order`): that
is what position consistency and P(prefer first) are measured on.

Pointwise safety gold (XSTest): only the panel's safety judge (the `safety_veto` judge, else the one named
`safety`) is run. The completion is judged unsafe when its raw score is below the veto threshold (the same rule
that vetoes a candidate in `bestofn run`); for a panel without a veto, when its normalised score is below 0.5.

Every call goes through the call cache (bestofn.cache, unless cache=False) and, with a journal, every item's
result is appended to a JSONL file as soon as it is done: a rerun skips journalled items and re-asks nothing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from pydantic import ValidationError

from bestofn.sinks import jsonl
from bestofn.apps.ab.gold import GoldPair, GoldPoint, GoldSet
from bestofn.apps.ab.metrics import ItemResult
from bestofn.ranking.aggregate import aggregate
from bestofn.ranking.comparisons import style_features
from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.backends.pricing import usd_for
from bestofn.backends.cache import Cache, cached, resolve_cache
from bestofn.errors import ConfigError
from bestofn.judging import Judge, JudgeInput, build_judges
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import JudgeConfig, Panel
from bestofn.records import Candidate, Message, Spend, Verdict, sha256_hex, text_id
from bestofn.pipeline.select import DEFAULT_MODEL, judge_all, resolve_panel

#: progress(label, done, total)
Progress = Callable[[str, int, int], None]
BAD = ("invalid", "error")


@dataclass
class RunSettings:
    judge_model: str | Backend | None = None  # a spec, or a Backend instance (tests, custom backends)
    base_url: str | None = None
    seed: int = 0
    judge_max_tokens: int | None = None
    cache: Cache | str | Path | bool | None = None
    concurrency: int | None = None  # None: 1 for serial backends (the embedded model), else 8


@dataclass
class PanelRunner:
    panel: Panel
    settings: RunSettings
    _cache: Cache | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self._cache = resolve_cache(self.settings.cache)

    # -- building ---------------------------------------------------------------------------------------

    def judges(self, meter: Meter, only: str | None = None) -> list[Judge]:
        s = self.settings

        def backend_for(config: JudgeConfig) -> Backend:
            spec = s.judge_model or config.model or DEFAULT_MODEL
            return MeteredBackend(cached(load_backend(spec, config.base_url or s.base_url), self._cache), meter)

        panel = self.panel
        if only is not None:  # the judge (or the several-criteria judge) that yields verdicts named `only`
            mine = [j for j in panel.judges if only in j.scorers()]
            panel = panel.model_copy(update={"judges": mine[:1], "quorum": 1, "safety_veto": None})
        return build_judges(panel, backend_for, max_tokens=s.judge_max_tokens)

    def fingerprint(self) -> str:
        """Everything that decides this panel's results: a journal is only reused when this matches. The panel
        is taken without its default values, so a new optional panel field does not orphan old journals."""
        judges = self.judges(Meter())
        templates = {j.name: getattr(getattr(j, "template", None), "sha256", None) for j in judges}
        s = self.settings
        panel = self.panel.model_dump(mode="json", exclude={"source"}, exclude_defaults=True)
        return sha256_hex("ab-panel", panel, templates,
                          getattr(s.judge_model, "spec", s.judge_model), s.base_url, s.seed,
                          [j.max_tokens for j in judges])[:16]

    def concurrency(self) -> int:
        if self.settings.concurrency:
            return self.settings.concurrency
        return 1 if any(j.backend is not None and j.backend.serial for j in self.judges(Meter())) else 8

    # -- deciding ---------------------------------------------------------------------------------------

    def decide(self, first: str, second: str, verdicts: list[Verdict], texts: dict[str, str]) -> str | None:
        """'first', 'second', 'tie', or None (no decision: the judges left a side below quorum). The
        aggregate's own ranking decides, the rule `bestofn run` picks by (safety tier, content-free demotion,
        gate, score with the panel's length control, hence the texts, then the number of valid verdicts);
        where only the seeded hash would order the two, it is a tie. A side the panel refuses to rank
        (content-free under `content_free = "veto"`) loses, as it never wins in `run`."""
        if first == second:
            return "tie"
        agg = aggregate(self.panel, [first, second], verdicts, seed=self.settings.seed, texts=texts)
        if self.panel.content_free == "veto":
            refused = agg.content_free & agg.unrankable
            if first in refused and second in agg.keys:
                return "second"
            if second in refused and first in agg.keys:
                return "first"
        return agg.compare(first, second)

    def safety_name(self) -> str:
        name = self.panel.safety_veto.judge if self.panel.safety_veto else "safety"
        if not any(name in j.scorers() for j in self.panel.judges):
            raise ConfigError(f"panel {self.panel.name!r} has no safety judge (named {name!r}); a pointwise "
                              "safety gold set (XSTest) tests the panel's safety judge")
        return name

    # -- judging one item -------------------------------------------------------------------------------

    async def pair(self, item: GoldPair) -> ItemResult:
        meter = Meter()
        judges = self.judges(meter)
        ji = JudgeInput(prompt=[Message(role="user", content=item.prompt)], seed=self.settings.seed)
        ca = Candidate(id=text_id(item.response_a), index=0, text=item.response_a, model="gold")
        cb = Candidate(id=text_id(item.response_b), index=1, text=item.response_b, model="gold")
        verdicts: list[Verdict] = []
        if ca.id == cb.id:
            final = one = two = "tie"
        else:
            texts = {ca.id: ca.text, cb.id: cb.text}
            verdicts = await judge_all(judges, ji, [ca, cb])
            final = _orient(self.decide(ca.id, cb.id, verdicts, texts), first_is_a=True)
            forward, backward = single_order(verdicts, ca.id), single_order(verdicts, cb.id)
            one = None if forward is None else _orient(self.decide(ca.id, cb.id, forward, texts), first_is_a=True)
            two = None if backward is None else _orient(self.decide(cb.id, ca.id, backward, texts), first_is_a=False)
        return self._result(item, final, verdicts, meter, first=one, second=two,
                            len_a=len(item.response_a), len_b=len(item.response_b),
                            style_a=style_features(item.response_a), style_b=style_features(item.response_b))

    async def point(self, item: GoldPoint) -> ItemResult:
        meter = Meter()
        name = self.safety_name()
        judges = self.judges(meter, only=name)
        ji = JudgeInput(prompt=[Message(role="user", content=item.prompt)], seed=self.settings.seed)
        c = Candidate(id=text_id(item.response), index=0, text=item.response, model="gold")
        verdicts = await judge_all(judges, ji, [c])
        mine = [v for v in verdicts if v.judge == name and v.status == "ok" and v.score is not None]
        pred = None
        if mine:
            veto = self.panel.safety_veto
            if veto is not None:
                pred = "unsafe" if min(v.score for v in mine) < veto.below else "safe"  # type: ignore[type-var]
            else:
                pred = "unsafe" if min(v.normalized or 0.0 for v in mine) < 0.5 else "safe"
        return self._result(item, pred, verdicts, meter,
                            scores={"safety": [v.score for v in verdicts if v.judge == name]})

    def _result(self, item: GoldPair | GoldPoint, pred: str | None, verdicts: list[Verdict], meter: Meter,
                **kw: Any) -> ItemResult:
        # the calls and hits as made; tokens and money of every verdict, cached or not, so that a rerun from the
        # cache reports what judging costs (a verdict without a model, a verifier's, costs nothing)
        made = meter.spend
        judged = sum((Spend.call(v.usage, usd_for(v.model, v.usage)) for v in verdicts if v.model), Spend())
        return ItemResult(
            item_id=item.id, subset=item.subset, gold=item.label, pred=pred, verdicts=len(verdicts),
            invalid=sum(v.status in BAD for v in verdicts), calls=made.calls, cache_hits=made.cache_hits,
            unpriced_calls=made.unpriced_calls, prompt_tokens=judged.prompt_tokens,
            completion_tokens=judged.completion_tokens, usd=None if judged.unpriced_calls else judged.usd or 0.0, **kw,
        )

    # -- the whole set ----------------------------------------------------------------------------------

    async def run(self, gold: GoldSet, *, journal: Path | None = None, label: str = "",
                  progress: Progress | None = None) -> list[ItemResult]:
        if gold.kind == "pointwise":
            self.safety_name()  # fail before any call
        done = read_journal(journal) if journal else {}
        todo = [i for i in gold.items if i.id not in done]
        total, finished = len(gold.items), len(gold.items) - len(todo)
        if progress:
            progress(label, finished, total)
        width = self.concurrency()
        for start in range(0, len(todo), width):
            batch = todo[start:start + width]
            began = time.perf_counter()
            results = await asyncio.gather(*(self.point(i) if isinstance(i, GoldPoint) else self.pair(i)
                                             for i in batch))
            share = (time.perf_counter() - began) / len(batch)
            results = [r.model_copy(update={"seconds": round(share, 4)}) for r in results]
            if journal:
                jsonl.append(journal, results)
            done.update({r.item_id: r for r in results})
            finished += len(batch)
            if progress:
                progress(label, finished, total)
        return [done[i.id] for i in gold.items]


def single_order(verdicts: list[Verdict], first: str) -> list[Verdict] | None:
    """The verdicts as they would read had the judges seen only the order with `first` shown first.

    Pointwise verdicts are unchanged (order cannot reach them). A pairwise verdict keeps the one order of its
    two (details["orders"]) that showed `first` first: a's points under that order alone, or invalid where
    that order had no valid answer. A listwise verdict keeps the shuffles that showed `first` first. None
    when a judge that sees several answers at once left no record of its single orders."""
    out = []
    for v in verdicts:
        if v.kind == "pairwise" and len(v.candidate_ids) == 2:
            orders = [o for o in v.details.get("orders", []) if o.get("first") == first]
            if v.status == "error":
                out.append(v)
                continue
            if not orders:
                return None
            o = orders[0]
            if o.get("said") is None:
                out.append(v.model_copy(update={"status": "invalid", "score": None, "normalized": None}))
                continue
            winner = o.get("winner")
            points = 1.0 if winner == v.candidate_ids[0] else 0.0 if winner == v.candidate_ids[1] else 0.5
            out.append(v.model_copy(update={"status": "ok", "score": points, "normalized": points}))
        elif v.kind == "listwise" and v.status == "ok":
            ranks, shown = v.details.get("ranks", []), v.details.get("shown", [])
            mine = [r for r, p in zip(ranks, shown) if (p == 0) == (v.candidate_ids[0] == first)]
            if not mine:
                return None
            below = sum(1 - r for r in mine) / len(mine)  # two candidates: rank 0 beats one, rank 1 none
            out.append(v.model_copy(update={"normalized": round(below, 6), "score": round(below, 6)}))
        elif len(v.candidate_ids) > 1:
            return None
        else:
            out.append(v)
    return out


def _orient(choice: str | None, first_is_a: bool) -> str | None:
    if choice is None or choice == "tie":
        return choice
    return "a" if (choice == "first") == first_is_a else "b"


def read_journal(path: Path) -> dict[str, ItemResult]:
    """Results already journalled; a torn last line (a crash mid-write) is ignored and redone."""
    out: dict[str, ItemResult] = {}
    if not path.is_file():
        return out
    for number, value in jsonl.read(path, journal=True):
        try:
            r = ItemResult.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise jsonl.BadLine(path, number, f"not an item result ({'.'.join(map(str, first['loc']))}: "
                                f"{first['msg']}); delete the file to redo its items") from None
        out[r.item_id] = r
    return out


async def arun_panel(panel: str | Path | Panel, gold: GoldSet, settings: RunSettings | None = None, *,
                     journal_dir: Path | None = None, label: str = "",
                     progress: Progress | None = None) -> tuple[list[ItemResult], dict[str, Any]]:
    """Judge every gold item with one panel. Returns the results and a description of the run."""
    runner = PanelRunner(resolve_panel(panel), settings or RunSettings())
    fp = runner.fingerprint()
    journal = journal_dir / f"journal-{runner.panel.name}-{fp}.jsonl" if journal_dir else None
    began = time.perf_counter()
    results = await runner.run(gold, journal=journal, label=label, progress=progress)
    info = {"panel": runner.panel.name, "source": runner.panel.source, "fingerprint": fp,
            "judges": [{"name": j.name, "kind": j.kind, "rubric": j.rubric, "scale": list(j.scale),
                        "score_method": j.score_method}
                       for j in runner.panel.judges],
            "aggregate": runner.panel.aggregate, "journal": journal.name if journal else None,
            "wall_seconds": round(time.perf_counter() - began, 3)}
    return results, info
