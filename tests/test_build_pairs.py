"""Pair strategies (unit tests over constructed records: no model). Ties and identical texts never pair; each
pair keeps both scores and its margin; best-random is seeded per prompt; a vetoed candidate is never chosen."""

from __future__ import annotations

from collections import Counter

import pytest

from bestofn.ranking.pairs import make_pairs, pair_id
from bestofn.records import Candidate, Message, Verdict, text_id

PROMPT = [Message(role="user", content="Name a prime number.")]


def _candidates(texts):
    seen, out = {}, []
    for i, t in enumerate(texts):
        out.append(Candidate(id=text_id(t), index=i, text=t, model="m", duplicate_of=seen.get(t)))
        seen.setdefault(t, i)
    return out


def _pairs(texts, scores, strategy, margin=0.1, seed=0, never_chosen=()):
    cands = _candidates(texts)
    by_text = {c.text: c.id for c in cands}
    score_by_id = {by_text[t]: s for t, s in zip(texts, scores)}
    ranking = sorted((i for i, s in score_by_id.items() if s is not None), key=lambda i: -score_by_id[i])
    verdicts = [Verdict(judge="j", kind="rubric", candidate_ids=[cid], status="ok", score=s, template_sha256="t")
                for cid, s in score_by_id.items() if s is not None]
    return make_pairs(prompt=PROMPT, candidates=cands, verdicts=verdicts, scores=score_by_id, ranking=ranking,
                      strategy=strategy, margin=margin, generator="m", panel="p", seed=seed,
                      never_chosen={by_text[t] for t in never_chosen}), by_text


def test_best_worst_keeps_scores_margin_and_a_stable_id():
    pairs, ids = _pairs(["2", "9", "4", "1"], [0.9, 0.2, 0.5, 0.6], "best-worst")
    (p,) = pairs
    assert (p.chosen[0].content, p.rejected[0].content) == ("2", "9")
    assert (p.score_chosen, p.score_rejected, p.margin) == (0.9, 0.2, 0.7)
    assert p.id == pair_id(PROMPT, "best-worst", ids["2"], ids["9"]) and p.template_sha256 == {"j": "t"}


def test_ties_identical_texts_and_small_margins_never_pair():
    assert _pairs(["a", "b"], [0.5, 0.5], "best-worst")[0] == []  # a tie
    assert _pairs(["a", "a", "a"], [0.5, None, None], "all-pairs")[0] == []  # one text, three times
    assert _pairs(["a", "b"], [0.55, 0.5], "best-worst")[0] == []  # below the margin
    assert _pairs(["a", "b"], [0.55, 0.5], "best-worst", margin=0.0)[0][0].margin == 0.05
    assert _pairs(["a", "b", "c"], [0.8, None, 0.1], "all-pairs")[0][0].rejected[0].content == "c"  # unrankable


def test_all_pairs_above_the_margin_only():
    pairs, _ = _pairs(["a", "b", "c", "d"], [0.9, 0.85, 0.5, 0.1], "all-pairs")
    got = {(p.chosen[0].content, p.rejected[0].content) for p in pairs}
    assert got == {("a", "c"), ("a", "d"), ("b", "c"), ("b", "d"), ("c", "d")}  # not (a, b): margin 0.05
    assert all(p.margin >= 0.1 and p.score_chosen > p.score_rejected for p in pairs)


def test_best_random_is_seeded_and_only_picks_eligible_rivals():
    texts, scores = ["a", "b", "c", "d", "e"], [0.9, 0.85, 0.5, 0.3, 0.1]
    picks = Counter(_pairs(texts, scores, "best-random", seed=s)[0][0].rejected[0].content for s in range(60))
    assert set(picks) == {"c", "d", "e"}  # "b" is within the margin of the best
    assert _pairs(texts, scores, "best-random", seed=7)[0] == _pairs(texts, scores, "best-random", seed=7)[0]
    (p,) = _pairs(texts, scores, "best-random", seed=7)[0]
    assert p.strategy == "best-random" and p.chosen[0].content == "a"


def test_best_worst_falls_back_to_the_lowest_eligible_rival_and_vetoed_never_chosen():
    # ranking by tier can put a higher-scoring (vetoed) candidate last: the pair skips it
    cands_scores = ["safe", "mid", "vetoed"], [0.7, 0.4, 0.9]
    pairs, _ = _pairs(*cands_scores, "best-worst")
    assert pairs[0].chosen[0].content == "vetoed"  # plain ranking by score
    pairs, _ = _pairs(*cands_scores, "best-worst", never_chosen=["vetoed"])
    assert pairs == []  # the best is vetoed: no pair at all
    assert [p.chosen[0].content for p in _pairs(*cands_scores, "all-pairs", never_chosen=["vetoed"])[0]] == ["safe"]


def test_unknown_strategy():
    with pytest.raises(ValueError, match="unknown pair strategy"):
        _pairs(["a", "b"], [0.9, 0.1], "best-median")
