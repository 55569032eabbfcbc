"""Ranking -> chosen/rejected preference pairs. Identical texts share an id and are judged and ranked once,
so chosen and rejected are never the same text; a pair needs a strictly positive margin of at least the
panel's `pair_margin`."""

from __future__ import annotations

import random
from typing import Literal

from bestofn.records import Candidate, Message, PreferencePair, Verdict, messages_id, sha256_hex

Strategy = Literal["best-worst", "best-random", "all-pairs"]
STRATEGIES: tuple[str, ...] = ("best-worst", "best-random", "all-pairs")


def pair_id(prompt: list[Message], strategy: str, chosen_id: str, rejected_id: str) -> str:
    return sha256_hex("pair", messages_id(prompt), strategy, chosen_id, rejected_id)


def _candidate_pairs(ranking: list[str], strategy: str, seed: int, prompt_key: str) -> list[tuple[str, str]]:
    if len(ranking) < 2:
        return []
    if strategy == "best-worst":
        return [(ranking[0], ranking[-1])]
    if strategy == "best-random":
        rng = random.Random(sha256_hex("best-random", seed, prompt_key))
        return [(ranking[0], rng.choice(ranking[1:]))]
    if strategy == "all-pairs":
        return [(a, b) for i, a in enumerate(ranking) for b in ranking[i + 1 :]]
    raise ValueError(f"unknown pair strategy {strategy!r}; choose from {', '.join(STRATEGIES)}")


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
) -> list[PreferencePair]:
    by_id = {c.id: c for c in candidates if c.duplicate_of is None}
    judges = sorted({v.judge for v in verdicts if v.status == "ok"})
    templates = {v.judge: v.template_sha256 for v in verdicts if v.template_sha256}
    pairs = []
    for chosen_id, rejected_id in _candidate_pairs(ranking, strategy, seed, messages_id(prompt)):
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
