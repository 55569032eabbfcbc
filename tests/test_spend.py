"""The one cost record (bestofn.records.Spend): its sums, a call, the meter that adds completions, the text of
the money, and the shapes of the costs built on it (a Selection's, a build's, an A/B item's, a rerank stage's)."""

import pytest

from bestofn.apps.ab.metrics import ItemResult, summarize
from bestofn.apps.build.report import BuildSummary
from bestofn.apps.rerank.cascade import StageReport
from bestofn.backends.base import Completion
from bestofn.backends.meter import Meter, describe_cost
from bestofn.records import Cost, Spend, Usage

PRICED = Spend.call(Usage(prompt_tokens=10, completion_tokens=5), 0.25)
UNPRICED = Spend.call(Usage(prompt_tokens=3, completion_tokens=2), None)


def test_a_call_is_priced_or_counted_unpriced():
    assert (PRICED.calls, PRICED.usd, PRICED.unpriced_calls, PRICED.tokens) == (1, 0.25, 0, 15)
    assert (UNPRICED.calls, UNPRICED.usd, UNPRICED.unpriced_calls, UNPRICED.tokens) == (1, None, 1, 5)


def test_adding_keeps_money_over_the_priced_calls_and_counts_the_rest():
    mixed = PRICED + UNPRICED
    assert mixed == Spend(calls=2, prompt_tokens=13, completion_tokens=7, usd=0.25, unpriced_calls=1)
    assert UNPRICED + PRICED == mixed  # the order does not matter, an unpriced call on the left included
    both_unpriced = UNPRICED + UNPRICED
    assert both_unpriced.usd is None and both_unpriced.unpriced_calls == 2  # no price known: no money, not $0
    assert (PRICED + PRICED).usd == 0.5 and (PRICED + PRICED).unpriced_calls == 0
    assert (Spend() + Spend(cache_hits=1)) == Spend(cache_hits=1)  # a hit: no call, no tokens, no money
    assert sum([PRICED, UNPRICED, Spend(cache_hits=2)], Spend()).cache_hits == 2


def test_sums_of_six_decimal_costs_stay_six_decimal_and_tiny_costs_still_count():
    tenth, fifth = Spend(calls=1, usd=0.1), Spend(calls=1, usd=0.2)
    assert (tenth + fifth).usd == 0.3  # not 0.30000000000000004
    tiny = Spend.call(Usage(prompt_tokens=10), 2e-8)  # a cheap model's call: well under a microdollar
    assert sum([tiny] * 5, Spend()).usd == pytest.approx(1e-7)


def test_the_meter_adds_fresh_calls_and_counts_hits_without_tokens():
    meter = Meter()
    meter.record([Completion(text="a", usage=Usage(prompt_tokens=1_000_000, completion_tokens=0)),
                  Completion(text="b", usage=Usage(prompt_tokens=7, completion_tokens=7), cached=True)],
                 spec="openai:some-model", price=(2.0, 4.0))
    meter.record([Completion(text="c", usage=Usage(prompt_tokens=5, completion_tokens=1))], spec="local")
    assert meter.spend == Spend(calls=2, cache_hits=1, prompt_tokens=1_000_005, completion_tokens=1, usd=2.0,
                                unpriced_calls=1)


def test_the_money_line_reads_the_record():
    assert describe_cost(PRICED) == "$0.250000"
    assert describe_cost(PRICED + UNPRICED) == "$0.250000 (1 of 2 calls unpriced)"
    assert describe_cost(UNPRICED + UNPRICED) == "$? (2 of 2 calls unpriced)"
    assert describe_cost(Spend()) == "$0.000000"  # no call at all costs nothing


def test_the_public_cost_shapes_keep_their_keys():
    cost = Cost(**(PRICED + Spend(calls=1, usd=0.0000004)).model_dump(), seconds=1.5)
    assert cost.usd == 0.25  # a Selection's money is kept to six decimals, the JSON's precision
    assert set(cost.model_dump()) == {"calls", "cache_hits", "prompt_tokens", "completion_tokens", "usd",
                                      "unpriced_calls", "seconds", "generation_seconds", "judging_seconds"}
    assert type(cost + cost) is Spend and (cost + cost).calls == 4  # seconds are not counts: they are not summed
    build = BuildSummary(out="o", format="trl", strategy="best-worst").model_dump()["cost"]
    assert list(build) == ["calls", "cache_hits", "prompt_tokens", "completion_tokens", "usd", "unpriced_calls",
                           "seconds"]
    stage = StageReport(method="llm-pointwise", model="local", input=3, kept=3, **UNPRICED.model_dump())
    assert stage.model_dump()["calls"] == 1 and stage.model_dump()["unpriced_calls"] == 1


def test_ab_figures_add_the_items_spend_and_say_no_price_when_an_item_has_none():
    def item(k: int, usd: float | None, **spend) -> ItemResult:
        return ItemResult(item_id=str(k), subset="s", gold="a", pred="a", usd=usd, **spend)

    priced = [item(0, 0.001, calls=2, prompt_tokens=10, completion_tokens=4),
              item(1, 0.002, calls=1, cache_hits=1, completion_tokens=6)]
    s = summarize(priced)
    assert s["usd_per_1000"] == pytest.approx(0.003 / 2 * 1000) and s["tokens_per_1000"] == pytest.approx(10_000)
    assert (s["fresh_calls"], s["cache_hits"], s["calls_per_1000"]) == (3, 1, 2000)
    s = summarize([*priced, item(2, None, calls=1, unpriced_calls=1)])
    assert s["usd_per_1000"] is None and s["unpriced_calls"] == 1  # one item without a price: no partial money
