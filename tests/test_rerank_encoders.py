"""bi-encoder (the packaged all-MiniLM-L6-v2) and cross-encoder (loading code, on a tiny model the test
builds and saves: no cross-encoder weights are available offline, so this proves loading and batching, not
ranking quality)."""

from __future__ import annotations

import shutil

import pytest

from bestofn.backends.cache import Cache
from bestofn.errors import ConfigError
from bestofn.apps.rerank.api import arerank
from bestofn.apps.rerank.encoders import packaged_model_path
from tests.rerank_example import GATING, LSTM_DOCS, LSTM_QUERY


async def test_bi_encoder_ranks_the_gating_passage_first(tmp_path):
    response = await arerank(LSTM_QUERY, LSTM_DOCS, method="bi-encoder", cache=tmp_path / "c")
    ranking = [r.index for r in response.results]
    print("bi-encoder ranking:", [(r.index, round(r.relevance_score, 3)) for r in response.results])
    assert ranking[0] == GATING
    assert sorted(ranking) == [0, 1, 2]
    scores = [r.relevance_score for r in response.results]
    assert scores == sorted(scores, reverse=True) and all(-1 <= s <= 1 for s in scores)
    assert response.results[0].document == {"text": LSTM_DOCS[GATING]}
    assert response.meta.model == str(packaged_model_path().resolve())
    assert response.meta.stages[0].scored == 3 and response.meta.cache_hits == 0


async def test_bi_encoder_cache_and_top_n_and_dict_documents(tmp_path):
    cache = Cache(tmp_path / "c")
    docs = [{"id": f"d{i}", "text": t, "source": "test"} for i, t in enumerate(LSTM_DOCS)]
    first = await arerank(LSTM_QUERY, docs, method="bi-encoder", top_n=2, cache=cache)
    assert [r.document["id"] for r in first.results][0] == "d1" and len(first.results) == 2
    assert first.results[0].document == docs[GATING]  # the caller's dict comes back whole
    again = await arerank(LSTM_QUERY, docs, method="bi-encoder", top_n=2, cache=cache)
    assert again.meta.cache_hits == 3 and again.meta.stages[0].scored == 0  # nothing re-encoded
    assert [(r.index, r.relevance_score) for r in again.results] == [(r.index, r.relevance_score) for r in first.results]
    other = await arerank("What do convolution filters detect?", docs, method="bi-encoder", cache=cache)
    assert other.meta.cache_hits == 0 and other.results[0].index == 0  # the key holds the query


async def test_encoder_errors_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="needs a model folder"):
        await arerank("q", ["a"], method="cross-encoder", cache=False)
    with pytest.raises(ConfigError, match="not a local folder"):
        await arerank("q", ["a"], method="bi-encoder", encoder=tmp_path / "nope", cache=False)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory):
    """A 1-layer BERT with one relevance output, MiniLM's tokenizer, saved to disk as any local model is."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    tokenizer = AutoTokenizer.from_pretrained(str(packaged_model_path()), local_files_only=True)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=1)
    BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


async def test_cross_encoder_loads_from_a_local_folder_and_batches(tiny_cross_encoder, tmp_path):
    from bestofn.apps.rerank.encoders import _load

    model = _load("cross-encoder", tiny_cross_encoder.resolve())
    forwards: list[int] = []
    hook = model.register_forward_pre_hook(lambda mod, args: forwards.append(args[0]["input_ids"].shape[0]))
    try:
        docs = [f"document number {i} about " + ("gates" if i % 2 else "filters") for i in range(10)]
        response = await arerank(LSTM_QUERY, docs, method="cross-encoder", encoder=tiny_cross_encoder, batch_size=4,
                                 cache=tmp_path / "c")
    finally:
        hook.remove()
    assert forwards == [4, 4, 2]  # 10 pairs in batches of 4, one forward pass per batch
    assert response.meta.stages[0].batches == 3
    assert sorted(r.index for r in response.results) == list(range(10))
    scores = [r.relevance_score for r in response.results]
    assert all(0.0 <= s <= 1.0 for s in scores)  # one logit through the default sigmoid
    assert scores == sorted(scores, reverse=True)
    # a copy of the folder is another model: the cache key holds the folder's fingerprint
    copy = tmp_path / "copy"
    shutil.copytree(tiny_cross_encoder, copy)
    again = await arerank(LSTM_QUERY, docs, method="cross-encoder", encoder=copy, cache=tmp_path / "c")
    assert again.meta.cache_hits == 0 and [r.index for r in again.results] == [r.index for r in response.results]
