"""The gold-set loaders on the real files in ../shared/data, and their errors."""

from __future__ import annotations

import csv
import json
from collections import Counter

import pytest

from bestofn.apps.ab.gold import GoldPair, GoldPoint, load_gold, xstest_label
from bestofn.errors import ConfigError


def test_llmbar_natural_and_adversarial_subsets(data_dir):
    gold = load_gold(data_dir / "llmbar" / "LLMBar")
    assert gold.kind == "pairwise"
    assert Counter(i.subset for i in gold.items) == {
        "Natural": 100, "Adversarial/Neighbor": 134, "Adversarial/GPTInst": 92,
        "Adversarial/GPTOut": 47, "Adversarial/Manual": 46}
    raw = json.loads((data_dir / "llmbar/LLMBar/Natural/dataset.json").read_text())
    natural = [i for i in gold.items if i.subset == "Natural"]
    assert [i.label for i in natural] == ["a" if r["label"] == 1 else "b" for r in raw]
    assert natural[3].response_a == raw[3]["output_1"] and natural[3].prompt == raw[3]["input"]
    assert natural[3].source.endswith("Natural/dataset.json#3")
    assert len({i.id for i in gold.items}) == len(gold.items)


def test_llmbar_processed_and_case_study(data_dir):
    processed = load_gold(data_dir / "llmbar" / "Processed")
    assert Counter(i.subset for i in processed.items) == {"MT-Bench": 200, "FairEval": 66, "LLMEval2": 200}
    case = load_gold(data_dir / "llmbar" / "CaseStudy")
    assert len(case.items) == 315 and len(case.subsets) == 5
    one = load_gold(data_dir / "llmbar/Processed/MT-Bench/dataset.json")
    assert one.subsets == ["MT-Bench"] and len(one.items) == 200


def test_hhh_best_against_other_on_both_sides(data_dir):
    gold = load_gold(data_dir / "bigbench_hhh_alignment")
    assert Counter(i.subset for i in gold.items) == {"harmless": 58, "helpful": 59, "honest": 61, "other": 43}
    labels = Counter(i.label for i in gold.items)
    assert labels["a"] > 60 and labels["b"] > 60  # the best reply is not always shown first
    task = json.loads((data_dir / "bigbench_hhh_alignment/harmless/task.json").read_text())
    ex = task["examples"][0]
    best = max(ex["target_scores"], key=ex["target_scores"].get)
    first = next(i for i in gold.items if i.subset == "harmless")
    assert (first.response_a if first.label == "a" else first.response_b) == best


def test_xstest_pointwise_labels(data_dir):
    gold = load_gold(data_dir / "xstest" / "human_labeled_completions")
    assert gold.kind == "pointwise" and len(gold.items) == 5 * 450
    assert all(isinstance(i, GoldPoint) for i in gold.items)
    prompts = {r["id"]: r for r in csv.DictReader(open(data_dir / "xstest/xstest_prompts.csv", encoding="utf-8"))}
    for item in gold.items[:450]:
        expected = xstest_label(prompts[item.id.split(":v2-")[1]]["label"], item.meta["final_label"])
        assert item.label == expected
    by_subset = Counter((i.subset, i.label) for i in gold.items)
    assert by_subset[("unsafe/compliance", "unsafe")] > 0 and by_subset[("safe/refusal", "safe")] > 0
    assert not any(i.subset.startswith("unsafe/refusal") and i.label == "unsafe" for i in gold.items)
    assert any("differ in wording" in n for n in gold.notes)  # v2-195 was reworded in the completions file
    single = load_gold(data_dir / "xstest/human_labeled_completions/xstest_v2_completions_gpt4_gpteval.csv")
    assert len(single.items) == 450  # finds xstest_prompts.csv one folder up


def test_xstest_label_mapping():
    assert xstest_label("safe", "2_full_refusal") == "safe"
    assert xstest_label("safe", "1_full_compliance") == "safe"
    assert xstest_label("unsafe", "2_full_refusal") == "safe"
    assert xstest_label("unsafe", "1_full_compliance") == "unsafe"
    assert xstest_label("unsafe", "3_partial_refusal") == "unsafe"
    with pytest.raises(ValueError):
        xstest_label("unsafe", "4_other")


def test_generic_jsonl_and_its_errors(tmp_path):
    good = tmp_path / "mine.jsonl"
    good.write_text(
        json.dumps({"prompt": "2+2?", "response_a": "4", "response_b": "5", "label": "a"}) + "\n\n"
        + json.dumps({"prompt": "hi", "response_a": "x", "response_b": "y", "label": "tie", "subset": "chat",
                      "id": "my-7"}) + "\n", encoding="utf-8")
    gold = load_gold(good)
    assert [(i.subset, i.label) for i in gold.items] == [("mine", "a"), ("chat", "tie")]
    assert gold.items[1].id == "my-7" and gold.items[1].source.endswith("mine.jsonl:3")
    assert isinstance(gold.items[0], GoldPair)

    bad = tmp_path / "bad.jsonl"
    lines = [{"prompt": "p", "response_a": "a", "response_b": "b", "label": "a"},
             {"prompt": "p", "response_a": "a", "response_b": "b", "label": "A"}]
    bad.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: field label"):
        load_gold(bad)
    bad.write_text(json.dumps(lines[0]) + "\n{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:2: not valid JSON"):
        load_gold(bad)
    bad.write_text(json.dumps({"prompt": "p", "response_a": "a", "label": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: missing field 'response_b'"):
        load_gold(bad)
    bad.write_text(json.dumps({**lines[0], "winner": "a"}) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad\.jsonl:1: unknown field\(s\) winner"):
        load_gold(bad)


def test_llmbar_errors_name_the_file_and_record(tmp_path):
    d = tmp_path / "Mine"
    d.mkdir()
    (d / "dataset.json").write_text(json.dumps([{"input": "q", "output_1": "a", "output_2": "b", "label": 1},
                                                {"input": "q", "output_1": "a", "output_2": "b", "label": 3}]))
    with pytest.raises(ConfigError, match=r"Mine/dataset\.json#1: label must be 1 or 2"):
        load_gold(d)
    with pytest.raises(ConfigError, match="no such file"):
        load_gold(tmp_path / "nothing")
    (tmp_path / "x.txt").write_text("hello")
    with pytest.raises(ConfigError, match="unknown format"):
        load_gold(tmp_path / "x.txt")


def test_limit_is_a_seeded_nested_sample_per_subset(data_dir):
    gold = load_gold(data_dir / "llmbar" / "LLMBar")
    ten, fifty = gold.limited(10, seed=0), gold.limited(50, seed=0)
    assert Counter(i.subset for i in ten.items) == {s: 10 for s in gold.subsets}
    assert Counter(i.subset for i in fifty.items) == {s: min(50, n) for s, n in
                                                       Counter(i.subset for i in gold.items).items()}
    assert {i.id for i in ten.items} <= {i.id for i in fifty.items}
    assert [i.id for i in gold.limited(10, seed=0).items] == [i.id for i in ten.items]
    assert {i.id for i in gold.limited(10, seed=1).items} != {i.id for i in ten.items}
    assert gold.limited(None) is gold
