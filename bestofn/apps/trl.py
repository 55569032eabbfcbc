"""bestofn panels as TRL reward functions: `reward_function(...)` is what `GRPOTrainer(reward_funcs=...)` (and TRL's
other online trainers) call.

TRL calls a reward function with `prompts` and `completions` (strings, or lists of messages in the conversational
format), `completion_ids`, every other dataset column as a keyword argument (one value per completion), and
`trainer_state`, `log_metric` and `log_extra`. GRPO passes each prompt's G completions consecutively
(`num_generations`): each run of G is one group, judged together (pairwise and listwise judges compare within
it) and aggregated as one selection, with the dataset columns of its first row as `bestofn build` reads them
(`constraints`, `reference`, IFEval's `instruction_id_list` and `kwargs`). Every group of a call is judged at
once, so all judge calls of a training step share the backends' limits and the call cache.

A completion's reward is its place in the panel's decision, read from the aggregate's tiers (`place`):
- top tier: its normalised aggregate score, 0 to 1;
- demoted, 0.0: the safety judge vetoed it, it failed a gate (verifier-first), it is content-free (unless the
  panel only flags those), it has no valid safety verdict, or a gate could not check it;
- unscorable, None: below the panel's quorum with no verdict against it (TRL turns None into NaN: another reward
  function's score stands alone; where every reward function says None, TRL warns and gives it no advantage).

The per-judge scores (each criterion's normalised score, each gate's) go to TRL through `log_metric` (batch
means, `bestofn/<judge>`, beside the tiers' shares) and `log_extra` (columns of the completions table), never as
reward functions of their own, which TRL would add into the training reward. With `log=`, each group's pairs are
appended to the preference log, so rollouts become DPO pairs too. `last` holds the latest call's Scoring.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError

from bestofn.apps.build.inputs import Columns, constraints_of
from bestofn.backends import load_backend
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache, cached, resolve_cache
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import JudgeConfig, Panel
from bestofn.errors import ConfigError
from bestofn.judging import JudgeInput, build_judges
from bestofn.pipeline.generate import mark_duplicates
from bestofn.pipeline.schedule import judge_all
from bestofn.pipeline.select import DEFAULT_MODEL, resolve_panel
from bestofn.ranking.aggregate import Aggregate, aggregate
from bestofn.ranking.pairs import STRATEGIES, make_pairs
from bestofn.records import Candidate, Cost, Message, Record, Selection, as_messages, text_id
from bestofn.sinks.log import PreferenceLog
from bestofn.sync import Portal

Tier = Literal["top", "demoted", "unscorable"]
#: what demotes a completion to 0.0; the first three are verdicts against it, the last two missing verdicts
DEMOTIONS = ("vetoed", "content_free", "gate_failed", "safety_flagged", "gate_unchecked")


class Scored(Record):
    """One completion's place in its group's decision."""

    index: int  # position in the call's completions
    group: int
    candidate_id: str
    reward: float | None
    tier: Tier
    demoted_by: list[str] = Field(default_factory=list)  # DEMOTIONS that apply, in that order
    score: float | None = None  # the normalised aggregate score (None: unrankable)
    per_judge: dict[str, float] = Field(default_factory=dict)  # judge -> normalised score (gates included)


class Scoring(Record):
    """What one call judged: a reward per completion, each one's place, each group's Selection, the metrics."""

    rewards: list[float | None]
    completions: list[Scored]
    selections: list[Selection]
    metrics: dict[str, float]


def place(agg: Aggregate, panel: Panel, cid: str) -> tuple[float | None, Tier, list[str]]:
    """(reward, tier, demotions) of a candidate, from the aggregate's own tiers."""
    content_free = agg.content_free if panel.content_free != "flag" else frozenset()
    tiers = {"vetoed": agg.vetoed, "content_free": content_free, "gate_failed": agg.gate_failed,
             "safety_flagged": agg.safety_flagged, "gate_unchecked": agg.gate_unchecked}
    why = [name for name in DEMOTIONS if cid in tiers[name]]
    decided = any(name in why for name in DEMOTIONS[:3])
    if why and (decided or cid not in agg.unrankable):
        return 0.0, "demoted", why
    score = agg.scores.get(cid)
    if cid in agg.unrankable or score is None:
        return None, "unscorable", []
    return score, "top", []


def _content(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content blocks: the text parts
        return "".join(b.get("text") or "" for b in content if isinstance(b, dict) and b.get("type") == "text")
    raise ConfigError(f"message content must be text or a list of content blocks, got {type(content).__name__}")


def completion_text(completion: Any) -> str:
    """A completion as text: a string as is; a list of messages (conversational): its assistant turns."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        turns = [_content(m.get("content")) for m in completion if isinstance(m, dict)
                 and m.get("role", "assistant") == "assistant"]
        return "\n".join(t for t in turns if t)
    raise ConfigError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def prompt_messages(prompt: Any) -> list[Message]:
    """A prompt as messages: a string is one user turn; a list of messages keeps its roles and text."""
    try:
        if isinstance(prompt, list):
            prompt = [{"role": m.get("role"), "content": _content(m.get("content"))} if isinstance(m, dict) else m
                      for m in prompt]
        return as_messages(prompt)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"a prompt message{' ' + where if where else ''}: {first['msg']}") from None
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"a prompt must be a string or a list of messages: {exc}") from None


class RewardFunction:
    """A TRL reward function over a bestofn panel (see the module's docstring; build one with reward_function)."""

    def __init__(self, *, panel: str | Path | Panel, judge_model: str | Backend | None, num_generations: int,
                 base_url: str | None, seed: int, judge_max_tokens: int | None, cache: Cache | str | Path | bool | None,
                 log: str | Path | None, strategy: str, pair_margin: float | None, columns: Columns | None,
                 name: str, generator: str) -> None:
        if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 1:
            raise ConfigError(f"num_generations must be a positive integer (the trainer's), got {num_generations!r}")
        if strategy not in STRATEGIES:
            raise ConfigError(f"unknown strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")
        self.panel = resolve_panel(panel)
        self.judge_model, self.num_generations, self.base_url, self.seed = judge_model, num_generations, base_url, seed
        self.judge_max_tokens, self.cache, self.log, self.strategy = judge_max_tokens, cache, log, strategy
        self.pair_margin = self.panel.pair_margin if pair_margin is None else pair_margin
        self.columns, self.generator = columns or Columns(), generator
        self.__name__ = name  # TRL logs the reward under rewards/<name>/
        self.last: Scoring | None = None
        self._portal = Portal(name=f"bestofn-{name}")  # one loop for every call: backends keep their pools

    def close(self) -> None:
        """Stop the function's event loop (closing the backends' connections on it); a later call starts a new one."""
        self._portal.close()

    def __repr__(self) -> str:
        return f"<bestofn reward {self.__name__!r}: panel {self.panel.name!r}, num_generations {self.num_generations}>"

    def __call__(self, prompts: list[Any], completions: list[Any], completion_ids: Any = None, *,
                 trainer_state: Any = None, log_metric: Any = None, log_extra: Any = None,
                 **columns: Any) -> list[float | None]:
        scoring = self._portal.run(self.ascore(prompts, completions, **columns))
        self.last = scoring
        if log_metric is not None:
            for key, value in scoring.metrics.items():
                log_metric(key, value)
        if log_extra is not None:
            for column, values in extra_columns(scoring).items():
                log_extra(column, values)
        return scoring.rewards

    async def ascore(self, prompts: list[Any], completions: list[Any], **columns: Any) -> Scoring:
        """Judge every group of the call at once; the rewards, each completion's place, and the Selections."""
        n, size = len(completions), self.num_generations
        if len(prompts) != n:
            raise ConfigError(f"{len(prompts)} prompts for {n} completions: TRL passes one prompt per completion")
        if n % size:
            raise ConfigError(f"{n} completions do not split into groups of num_generations={size}: pass the "
                              "trainer's num_generations (GRPOConfig.num_generations)")
        starts = range(0, n, size)
        for start in starts:
            if any(prompts[i] != prompts[start] for i in range(start, start + size)):
                raise ConfigError(f"completions {start}-{start + size - 1} answer different prompts: "
                                  f"num_generations={size} is not the trainer's")
        rows = [{k: v[start] for k, v in columns.items() if isinstance(v, (list, tuple)) and len(v) == n}
                for start in starts]
        cache = resolve_cache(self.cache)
        groups = await asyncio.gather(*(
            self._group(k, start, prompts[start], completions[start:start + size], rows[k], cache)
            for k, start in enumerate(starts)))
        selections = [selection for selection, _ in groups]
        scored = [s for _, group in groups for s in group]
        if self.log is not None:
            PreferenceLog(self.log).write(p for s in selections for p in s.pairs)
        return Scoring(rewards=[s.reward for s in scored], completions=scored, selections=selections,
                       metrics=metrics(scored, selections))

    def _backend_for(self, meter: Meter, cache: Cache | None):
        def backend_for(config: JudgeConfig) -> Backend:
            spec = self.judge_model or config.model or DEFAULT_MODEL
            return MeteredBackend(cached(load_backend(spec, config.base_url or self.base_url), cache), meter)
        return backend_for

    async def _group(self, group: int, start: int, prompt: Any, completions: list[Any], row: dict[str, Any],
                     cache: Cache | None) -> tuple[Selection, list[Scored]]:
        messages = prompt_messages(prompt)
        try:
            constraints = constraints_of(row, self.columns)
        except ValueError as exc:
            raise ConfigError(f"dataset row of completion {start}: {exc}") from None
        reference = row.get(self.columns.reference)
        if reference is not None and not isinstance(reference, str):
            raise ConfigError(f"dataset row of completion {start}: {self.columns.reference}: expected a string, "
                              f"got {type(reference).__name__}")
        meter = Meter()
        judges = build_judges(self.panel, self._backend_for(meter, cache), max_tokens=self.judge_max_tokens)
        texts = [completion_text(c) for c in completions]
        candidates = mark_duplicates([Candidate(id=text_id(t), index=i, text=t, model=self.generator)
                                      for i, t in enumerate(texts)])
        started = time.perf_counter()
        item = JudgeInput(prompt=messages, seed=self.seed, reference=reference or None, constraints=constraints)
        verdicts = await judge_all(judges, item, candidates)
        seconds = round(time.perf_counter() - started, 3)
        unique = [c.id for c in candidates if c.duplicate_of is None]
        agg = aggregate(self.panel, unique, verdicts, seed=self.seed, texts={c.id: c.text for c in candidates})
        pairs = make_pairs(prompt=messages, candidates=candidates, verdicts=verdicts, scores=agg.scores,
                           ranking=agg.ranking, strategy=self.strategy, margin=self.pair_margin,
                           generator=self.generator, panel=self.panel.name, seed=self.seed, never_chosen=agg.unsafe)
        best = next((c for c in candidates if agg.ranking and c.id == agg.ranking[0]), None)
        selection = Selection(prompt=messages, panel=self.panel.name, candidates=candidates, verdicts=verdicts,
                              scores=agg.scores, ranking=agg.ranking, best=best, pairs=pairs, stats=agg.stats,
                              cost=Cost(**meter.spend.model_dump(), seconds=seconds, judging_seconds=seconds))
        gates = self.panel.gates()
        gated: dict[str, dict[str, float]] = {}
        for v in verdicts:
            if v.judge in gates and v.status == "ok" and v.normalized is not None and len(v.candidate_ids) == 1:
                mine = gated.setdefault(v.candidate_ids[0], {})
                mine[v.judge] = min(v.normalized, mine.get(v.judge, 1.0))
        scored = []
        for c in candidates:
            reward, tier, why = place(agg, self.panel, c.id)
            scored.append(Scored(index=start + c.index, group=group, candidate_id=c.id, reward=reward, tier=tier,
                                 demoted_by=why, score=agg.scores.get(c.id),
                                 per_judge={**gated.get(c.id, {}), **agg.stats["per_judge"].get(c.id, {})}))
        return selection, scored


def metrics(scored: list[Scored], selections: list[Selection]) -> dict[str, float]:
    """Batch figures for TRL's `log_metric`: each judge's mean normalised score over the completions it scored,
    the share of each tier and of each demotion, and the judge calls and cache hits."""
    n = max(len(scored), 1)
    out: dict[str, float] = {}
    judges = sorted({j for s in scored for j in s.per_judge})
    for judge in judges:
        out[f"bestofn/{judge}"] = statistics.fmean(s.per_judge[judge] for s in scored if judge in s.per_judge)
    for tier in Tier.__args__:  # type: ignore[attr-defined]
        out[f"bestofn/tier/{tier}"] = sum(s.tier == tier for s in scored) / n
    for reason in DEMOTIONS:
        out[f"bestofn/demoted/{reason}"] = sum(reason in s.demoted_by for s in scored) / n
    out["bestofn/judge_calls"] = float(sum(s.cost.calls for s in selections))
    out["bestofn/cache_hits"] = float(sum(s.cost.cache_hits for s in selections))
    return out


def extra_columns(scoring: Scoring) -> dict[str, list[Any]]:
    """Columns for TRL's completions table (`log_extra`): the tier, the score and each judge's score."""
    judges = sorted({j for s in scoring.completions for j in s.per_judge})
    columns: dict[str, list[Any]] = {"bestofn/tier": [s.tier for s in scoring.completions],
                                     "bestofn/score": [s.score for s in scoring.completions]}
    for judge in judges:
        columns[f"bestofn/{judge}"] = [s.per_judge.get(judge) for s in scoring.completions]
    return columns


def reward_function(
    panel: str | Path | Panel = "default",
    judge_model: str | Backend | None = None,
    *,
    num_generations: int,
    base_url: str | None = None,
    seed: int = 0,
    judge_max_tokens: int | None = None,
    cache: Cache | str | Path | bool | None = None,
    log: str | Path | None = None,
    strategy: str = "best-worst",
    pair_margin: float | None = None,
    columns: Columns | None = None,
    name: str = "bestofn",
    generator: str = "policy",
) -> RewardFunction:
    """A reward function for TRL's `reward_funcs`. `num_generations`: the trainer's (GRPOConfig.num_generations);
    `judge_model` overrides every judge's model (default: the panel's, else `local`); `log`: a preference log
    the groups' pairs are appended to (`strategy`, `pair_margin` as in `bestofn run`); `columns`: the dataset's
    reference and constraints column names; `name`: what TRL logs the reward under; `generator`: the policy's
    name in the logged pairs."""
    return RewardFunction(panel=panel, judge_model=judge_model, num_generations=num_generations, base_url=base_url,
                          seed=seed, judge_max_tokens=judge_max_tokens, cache=cache, log=log, strategy=strategy,
                          pair_margin=pair_margin, columns=columns, name=name, generator=generator)


__all__ = ["DEMOTIONS", "RewardFunction", "Scored", "Scoring", "completion_text", "place", "prompt_messages",
           "reward_function"]
