"""Pure parts of reranking: metrics against hand-computed values, document normalisation and cascade stage
parsing. No model. (Permutation repair and sliding windows are tested through the reranker in
test_rerank_llm.py; they live in bestofn/judging/permutation.py.)"""

from __future__ import annotations

import math

import pytest

from bestofn.errors import ConfigError
from bestofn.apps.rerank.api import METHODS, normalize_documents
from bestofn.apps.rerank.cascade import Stage, parse_stages
from bestofn.apps.rerank.metrics import dcg_at_k, mean_ndcg_at_k, mean_reciprocal_rank, ndcg_at_k, reciprocal_rank

L2, L3, L4 = math.log2(3), math.log2(4), math.log2(5)


def test_dcg_and_ndcg_hand_computed():
    # ranking labels [3, 2, 3, 0, 1, 2] (the classic Wikipedia example), linear gain
    labels = [3, 2, 3, 0, 1, 2]
    dcg6 = 3 + 2 / L2 + 3 / L3 + 0 / L4 + 1 / math.log2(6) + 2 / math.log2(7)
    assert dcg_at_k(labels, 6) == pytest.approx(dcg6)
    assert dcg6 == pytest.approx(6.861, abs=1e-3)
    ranking = ["d1", "d2", "d3", "d4", "d5", "d6"]
    qrels = dict(zip(ranking, labels))
    ideal6 = 3 + 3 / L2 + 2 / L3 + 2 / L4 + 1 / math.log2(6)  # labels sorted: 3, 3, 2, 2, 1, 0
    assert ndcg_at_k(ranking, qrels, 6) == pytest.approx(dcg6 / ideal6)
    assert ndcg_at_k(ranking, qrels, 6) == pytest.approx(0.9608, abs=1e-4)
    # @3: dcg 3 + 2/log2(3) + 3/2 over ideal 3 + 3/log2(3) + 2/2
    assert ndcg_at_k(ranking, qrels, 3) == pytest.approx((3 + 2 / L2 + 1.5) / (3 + 3 / L2 + 1))


def test_ndcg_counts_relevant_documents_missing_from_the_ranking():
    # one relevant document ranked 2nd, another never retrieved: ideal has both
    qrels = {"a": 1, "b": 1}
    assert ndcg_at_k(["x", "a", "y"], qrels, 10) == pytest.approx((1 / L2) / (1 + 1 / L2))
    assert ndcg_at_k(["x", "y"], qrels, 10) == 0.0
    assert ndcg_at_k(["x"], {}, 10) == 0.0  # nothing relevant: 0, not a division by zero
    # exponential gain: label 2 -> 3, label 1 -> 1
    assert ndcg_at_k(["b", "a"], {"a": 2, "b": 1}, 2, gain="exponential") == pytest.approx(
        (1 + 3 / L2) / (3 + 1 / L2))
    with pytest.raises(ValueError):
        ndcg_at_k(["a"], {"a": 1}, 0)


def test_mrr_hand_computed():
    assert reciprocal_rank(["x", "y", "a"], {"a": 1}) == pytest.approx(1 / 3)
    assert reciprocal_rank(["x", "y", "a"], {"a": 1}, k=2) == 0.0
    assert reciprocal_rank(["a", "b"], {"a": 0, "b": 2}) == 0.5  # label 0 is not relevant
    runs = [(["a"], {"a": 1}), (["x", "a"], {"a": 1}), (["x", "y", "z", "a"], {"a": 1}), (["x"], {"a": 1})]
    assert mean_reciprocal_rank(runs) == pytest.approx((1 + 0.5 + 0.25 + 0) / 4)
    assert mean_ndcg_at_k([(["a"], {"a": 1}), (["x", "a"], {"a": 1})], 10) == pytest.approx((1 + 1 / L2) / 2)


def test_normalize_documents():
    docs = normalize_documents(["a", {"id": 7, "text": "b", "url": "u"}])
    assert docs == [{"text": "a"}, {"id": 7, "text": "b", "url": "u"}]
    assert normalize_documents([{"body": "x"}], text_field="body") == [{"body": "x"}]
    with pytest.raises(ConfigError, match="document 1: no string field 'text'"):
        normalize_documents(["a", {"body": "x"}])
    with pytest.raises(ConfigError, match="document 0"):
        normalize_documents([3])
    with pytest.raises(ConfigError):
        normalize_documents("just a string")


def test_parse_stages():
    assert parse_stages("bi-encoder:20, llm-pointwise", METHODS) == [Stage("bi-encoder", 20), Stage("llm-pointwise")]
    for bad, message in [("bm25:3", "unknown method"), ("bi-encoder:x", "not an integer"),
                         ("bi-encoder:0", "at least 1"), ("cascade:3", "unknown method")]:
        with pytest.raises(ConfigError, match=message):
            parse_stages(bad, METHODS)
