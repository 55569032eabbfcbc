"""Ranking -> chosen/rejected preference pairs. Identical texts share an id and are judged and ranked once,
so chosen and rejected are never the same text; a pair needs a strictly positive margin of at least the
panel's `pair_margin`."""

from __future__ import annotations

import random
from collections.abc import Collection
from typing import Literal

from bestofn.records import Candidate, Message, PreferencePair, Verdict, messages_id, sha256_hex

Strategy = Literal["best-worst", "best-random", "all-pairs"]
STRATEGIES: tuple[str, ...] = ("best-worst", "best-random", "all-pairs")


def pair_id(prompt: list[Message], strategy: str, chosen_id: str, rejected_id: str) -> str:
    return sha256_hex("pair", messages_id(prompt), strategy, chosen_id, rejected_id)


def _candidate_pairs(
    ranking: list[str], scores: dict[str, float | None], strategy: str, seed: int, prompt_key: str, margin: float
) -> list[tuple[str, str]]:
    """(chosen, rejected) id pairs. Only pairs with a strictly positive score gap of at least `margin` count:
    best-worst takes the lowest-ranked such rival, best-random a random one (seeded per prompt)."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown pair strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")

    def ok(a: str, b: str) -> bool:
        high, low = scores.get(a), scores.get(b)
        if high is None or low is None:
            return False
        gap = round(high - low, 6)
        return gap > 0 and gap >= margin

    if len(ranking) < 2:
        return []
    if strategy == "all-pairs":
        return [(a, b) for i, a in enumerate(ranking) for b in ranking[i + 1 :] if ok(a, b)]
    best = ranking[0]
    rivals = [r for r in ranking[1:] if ok(best, r)]
    if not rivals:
        return []
    if strategy == "best-worst":
        return [(best, rivals[-1])]
    rng = random.Random(sha256_hex("best-random", seed, prompt_key))
    return [(best, rng.choice(rivals))]


def make_pairs(
    *,
    prompt: list[Message],
    candidates: list[Candidate],
    verdicts: list[Verdict],
    scores: dict[str, float | None],
    ranking: list[str],
    strategy: str = "best-worst",
    margin: float = 0.1,
    generator: str,
    panel: str,
    seed: int = 0,
    never_chosen: Collection[str] = (),
) -> list[PreferencePair]:
    """`never_chosen`: candidate ids that may not be the chosen side (e.g. vetoed by the safety judge)."""
    by_id = {c.id: c for c in candidates if c.duplicate_of is None}
    judges = sorted({v.judge for v in verdicts if v.status == "ok"})
    templates = {v.judge: v.template_sha256 for v in verdicts if v.template_sha256}
    pairs = []
    for chosen_id, rejected_id in _candidate_pairs(ranking, scores, strategy, seed, messages_id(prompt), margin):
        if chosen_id in never_chosen:
            continue
        chosen, rejected = by_id[chosen_id], by_id[rejected_id]
        high, low = scores[chosen_id], scores[rejected_id]
        if high is None or low is None or chosen.text == rejected.text:
            continue
        gap = round(high - low, 6)
        if gap <= 0 or gap < margin:
            continue
        pairs.append(
            PreferencePair(
                id=pair_id(prompt, strategy, chosen_id, rejected_id),
                prompt=prompt,
                chosen=[Message(role="assistant", content=chosen.text)],
                rejected=[Message(role="assistant", content=rejected.text)],
                score_chosen=high,
                score_rejected=low,
                margin=gap,
                strategy=strategy,
                judges=judges,
                template_sha256=dict(sorted(templates.items())),
                generator=generator,
                panel=panel,
                seed=seed,
                chosen_id=chosen_id,
                rejected_id=rejected_id,
            )
        )
    return pairs
