"""LLM rerankers on the real embedded model (SmolLM2-135M), the cascade's call counts, and listwise permutation
repair (a scripted backend: that test is about parsing broken replies, which the real model rarely gives)."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from bestofn.errors import BackendError, ConfigError
from bestofn.apps.rerank.api import arerank, rerank
from tests.fake_backend import FakeBackend
from tests.oracle_backend import OracleBackend
from tests.rerank_example import GATING, LSTM_DOCS, LSTM_QUERY


def _report(name, response):
    print(f"{name} on the LSTM example:",
          [(r.index, None if r.relevance_score is None else round(r.relevance_score, 3)) for r in response.results],
          "(gating passage first)" if response.results[0].index == GATING else "(gating passage NOT first)")


def _valid(response, n):
    assert sorted(r.index for r in response.results) == list(range(n))
    scores = [r.relevance_score for r in response.results if r.relevance_score is not None]
    assert scores == sorted(scores, reverse=True)
    assert all(r.document == {"text": LSTM_DOCS[r.index]} for r in response.results)


async def test_llm_pointwise_on_the_local_model(local_backend, tmp_path):
    response = await arerank(LSTM_QUERY, LSTM_DOCS, method="llm-pointwise", model=local_backend, cache=tmp_path / "c")
    _report("llm-pointwise", response)
    _valid(response, 3)
    stage = response.meta.stages[0]
    assert stage.calls == 3 and stage.failed == 0  # one structured call per document, all valid
    assert all(r.relevance_score in {k / 10 for k in range(11)} for r in response.results)
    assert stage.prompt_tokens > 0 and stage.completion_tokens > 0
    again = await arerank(LSTM_QUERY, LSTM_DOCS, method="llm-pointwise", model=local_backend, cache=tmp_path / "c")
    assert again.meta.llm_calls == 0 and again.meta.cache_hits == 3
    assert again.results == response.results


async def test_llm_listwise_on_the_local_model(local_backend, tmp_path):
    response = await arerank(LSTM_QUERY, LSTM_DOCS, method="llm-listwise", model=local_backend, cache=tmp_path / "c")
    _report("llm-listwise", response)
    _valid(response, 3)
    stage = response.meta.stages[0]
    assert stage.calls == 1 and stage.passes == 1 and stage.windows == 1  # 3 documents fit one window
    assert [r.relevance_score for r in response.results] == pytest.approx([1.0, 2 / 3, 1 / 3])


async def test_cascade_calls_the_llm_only_for_the_survivors(local_backend, tmp_path):
    filler = [f"A recipe for {dish}: mix, season and cook for twenty minutes." for dish in
              ("lentil soup", "fried rice", "pancakes", "tomato sauce", "omelette")]
    docs = filler[:2] + LSTM_DOCS + filler[2:]  # 8 documents; the gating passage is index 3
    options = dict(method="cascade", stages="bi-encoder:3,llm-pointwise:2", model=local_backend, cache=tmp_path / "c")
    response = await arerank(LSTM_QUERY, docs, **options)
    first, second = response.meta.stages
    print("cascade:", [(r.index, r.relevance_score) for r in response.results])
    assert (first.method, first.input, first.kept, first.calls) == ("bi-encoder", 8, 3, 0)
    assert (second.method, second.input, second.kept, second.calls) == ("llm-pointwise", 3, 2, 3)
    assert response.meta.llm_calls == 3 and len(response.results) == 2
    assert {r.index for r in response.results} <= {2, 3, 4}  # only the ML passages survive the bi-encoder
    again = await arerank(LSTM_QUERY, docs, **options)
    assert again.meta.llm_calls == 0 and again.meta.cache_hits == 3 + 8  # 3 LLM calls + 8 encoder scores
    narrower = await arerank(LSTM_QUERY, docs, top_n=1, **options)
    assert len(narrower.results) == 1 and narrower.meta.stages[1].kept == 1


async def test_listwise_reasks_then_repairs_broken_permutations():
    # scripted replies: 5 documents, window 4, step 2 -> pass 1 windows at (1, 4) and (0, 3), pass 2 at (2, 3)
    backend = FakeBackend([
        json.dumps({"ranking": ["D", "D", "A", "B"]}),  # D twice, C missing: re-asked...
        json.dumps({"ranking": ["D", "D", "A", "B"]}),  # ...still broken: repaired to D, A, B, C
        json.dumps({"ranking": ["B", "A", "C"]}),  # a valid permutation
        ('{"ranking": ["A",', "length"),  # cut at max_tokens: re-asked...
        json.dumps({"ranking": ["C", "B", "A"]}),  # ...and valid
    ], spec="fake-listwise")
    docs = [f"doc {i}" for i in range(5)]
    response = await arerank("q", docs, method="llm-listwise", model=backend, window=4, step=2, cache=False)
    # docs 1,2,3,4 shown as A-D -> D,A,B,C = 4,1,2,3: order 0,4,1,2,3; docs 0,4,1 as A-C -> B,A,C: 4,0,1,2,3;
    # pass 2 over positions 2..4 = docs 1,2,3 -> C,B,A: 4,0,3,2,1
    assert [r.index for r in response.results] == [4, 0, 3, 2, 1]
    assert [r.relevance_score for r in response.results] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    stage = response.meta.stages[0]
    assert (stage.passes, stage.windows, stage.calls, stage.reasked, stage.repaired) == (2, 3, 5, 2, 1)
    assert any("more than once" in p and "missing 'C'" in p for p in stage.problems)
    # the schema sent holds exactly `count` labels; the documents are labelled and delimited
    schema = backend.requests[0][1].json_schema["properties"]["ranking"]
    assert schema["minItems"] == schema["maxItems"] == 4 and schema["items"]["enum"] == ["A", "B", "C", "D"]
    user = backend.requests[0][0][1].content
    assert "Document [A]" in user and "Document [D]" in user and "<document-" in user


async def test_listwise_passes_sort_everything_not_only_the_top():
    rng = random.Random(3)
    texts = [f"passage {i}: " + " ".join(rng.choice("abcdefgh") for _ in range(6)) for i in range(23)]
    quality = {t: rng.random() for t in texts}
    best_first = sorted(range(23), key=lambda i: -quality[texts[i]])

    async def run(**kw):
        oracle = OracleBackend(quality)
        response = await arerank("q", texts, method="llm-listwise", model=oracle, window=8, step=4, cache=False, **kw)
        return [r.index for r in response.results], response.meta.stages[0], oracle.calls

    one_pass, stage, calls = await run(max_passes=1)
    assert one_pass[:4] == best_first[:4] and one_pass != best_first  # one pass settles only the top
    assert stage.passes == 1 and calls == 5  # windows starting at 15, 11, 7, 3, 0
    full, stage, calls = await run()
    assert full == best_first and stage.passes > 1 and calls == stage.windows
    top, stage, top_calls = await run(top_n=5)
    assert top == best_first[:5] and top_calls < calls  # settling the top 5 only takes fewer windows


class ScoreOracle(OracleBackend):
    """The judges' oracle, answering the reranker's score-only schema from the hidden quality."""

    def reply(self, messages, schema):
        if set(schema["properties"]) == {"score"}:
            (text,) = self.shown(messages)
            return json.dumps({"score": round(self.quality[text])})
        return super().reply(messages, schema)


async def test_pointwise_through_the_oracle_and_concurrency():
    texts = ["weak", "best", "fair", "good"]
    oracle = ScoreOracle({"weak": 1, "best": 9, "fair": 4, "good": 7})
    response = await arerank("q", texts, method="llm-pointwise", model=oracle, cache=False)
    assert [(r.index, r.relevance_score) for r in response.results] == [(1, 0.9), (3, 0.7), (2, 0.4), (0, 0.1)]
    assert oracle.calls == 4 and response.meta.llm_calls == 4
    # every call is in flight at once (the backend bounds concurrency, not the reranker)
    gate, inflight = asyncio.Event(), []

    class Slow(ScoreOracle):
        async def sample(self, messages, params):
            inflight.append(1)
            if len(inflight) == len(texts):
                gate.set()
            await asyncio.wait_for(gate.wait(), 5)
            return await super().sample(messages, params)

    slow = await arerank("q", texts, method="llm-pointwise", model=Slow(oracle.quality), cache=False)
    assert [r.index for r in slow.results] == [1, 3, 2, 0]


async def test_pointwise_invalid_replies_are_reasked_then_rank_last():
    backend = FakeBackend(['{"score": 7}', '{"score": 11}', '{"score": 12}', ('{"score": 3', "length"),
                           '{"score": 4}'], spec="fake-pointwise")
    response = await arerank("q", ["a", "b", "c"], method="llm-pointwise", model=backend, cache=False)
    # a: 7; b: 11 then 12, out of range twice -> no score; c: cut at max_tokens, re-asked -> 4
    assert [(r.index, r.relevance_score) for r in response.results] == [(0, 0.7), (2, 0.4), (1, None)]
    assert response.meta.failed == 1 and response.meta.llm_calls == 5
    with pytest.raises(BackendError, match="no document got a valid score"):
        await arerank("q", ["a"], method="llm-pointwise", model=FakeBackend(["nope", "nope"]), cache=False)


async def test_own_template(tmp_path):
    own = tmp_path / "strict.v1.md.j2"
    own.write_text("{% block system %}Grade like a librarian, {{ low }}-{{ high }}.{% endblock %}"
                   "{% block user %}Q={{ query }} D={{ document }}{% endblock %}", encoding="utf-8")
    backend = FakeBackend(['{"score": 5}'])
    response = await arerank("q", ["a"], method="llm-pointwise", model=backend, template=str(own), cache=False)
    assert response.results[0].relevance_score == 0.5
    system, user = backend.requests[0][0]
    assert system.content == "Grade like a librarian, 0-10." and user.content.startswith("Q=q D=<document-")


def test_sync_wrapper_and_argument_errors():
    assert rerank("q", [], method="llm-pointwise", cache=False).results == []
    with pytest.raises(ConfigError, match="unknown rerank method"):
        rerank("q", ["a"], method="bm25")
    with pytest.raises(ConfigError, match="top_n"):
        rerank("q", ["a"], top_n=0)
    with pytest.raises(ConfigError, match="query"):
        rerank("  ", ["a"])
    with pytest.raises(ConfigError, match="stages"):
        rerank("q", ["a"], method="bi-encoder", stages="bi-encoder:1")
    with pytest.raises(ConfigError, match="window"):
        rerank("q", ["a"], method="llm-listwise", model=FakeBackend(), window=4, step=4, cache=False)
