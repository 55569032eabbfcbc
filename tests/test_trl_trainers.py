"""The real TRL trainers, offline, on a tiny model made on the spot (tests/tiny_lm.py): GRPOTrainer calls bestofn's
reward function (the verifier-first panel, judged by the embedded model) and logs the rewards the mapping gives;
SFTTrainer and DPOTrainer take `bestofn build`'s sft and trl-conversational files as they are."""

from __future__ import annotations

import json
import math
import os

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"  # before huggingface_hub is imported: the hub is never asked
os.environ["HF_DATASETS_OFFLINE"] = "1"

trl = pytest.importorskip("trl")
datasets = pytest.importorskip("datasets")

from bestofn.apps.build import Columns, build  # noqa: E402
from bestofn.records import Selection  # noqa: E402
from bestofn.trl import reward_function  # noqa: E402
from tests.tiny_lm import build_tiny_lm  # noqa: E402

QUIET = dict(report_to="none", use_cpu=True, bf16=False, save_strategy="no", disable_tqdm=True, seed=0)


@pytest.fixture(scope="module")
def ifeval(data_dir):
    with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, ifeval):
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny-lm"), [r["prompt"] for r in ifeval[:200]]))


def mapped(selection: Selection, cid: str) -> float | None:
    """The reward the issue's mapping gives, read from the Selection's JSON tiers (not the code under test's)."""
    st = selection.stats
    gate = st.get("gate", {})
    decided = cid in st["vetoed"] or cid in st["content_free"] or cid in gate.get("failed", [])
    missing = cid in st["safety_flagged"] or cid in gate.get("unchecked", [])
    if decided or (missing and cid not in st["unrankable"]):
        return 0.0
    if cid in st["unrankable"] or selection.scores[cid] is None:
        return None
    return selection.scores[cid]


@pytest.mark.timeout(900)
def test_grpo_trains_two_steps_on_the_verifier_first_reward(tmp_path, tiny, ifeval):
    rows = ifeval[:4]
    dataset = datasets.Dataset.from_list([
        {"prompt": [{"role": "user", "content": r["prompt"]}], "instruction_id_list": r["instruction_id_list"],
         "kwargs": r["kwargs"]} for r in rows])
    reward = reward_function("verifier-first", "local", num_generations=2, judge_max_tokens=96)
    args = trl.GRPOConfig(output_dir=str(tmp_path / "grpo"), per_device_train_batch_size=4, num_generations=2,
                          steps_per_generation=2, max_completion_length=12, max_steps=2, logging_steps=1,
                          shuffle_dataset=False, **QUIET)
    trainer = trl.GRPOTrainer(model=tiny, reward_funcs=reward, args=args, train_dataset=dataset)
    trainer.train()
    assert trainer.state.global_step == 2

    # one generation batch (4 prompts x 2) served both steps: the reward function saw the trainer's completions
    scoring = reward.last
    completions = list(trainer._logs["completion"])
    assert len(completions) == len(scoring.completions) == 8
    judged = [c.text for s in scoring.selections for c in s.candidates]
    assert judged == [c[0]["content"] for c in completions]
    assert [s.prompt[0].content for s in scoring.selections] == [r["prompt"] for r in rows]

    # the rewards TRL logged are the mapping's, per completion (None -> NaN)
    by_group = [(scoring.selections[s.group], s.candidate_id) for s in scoring.completions]
    expected = [mapped(sel, cid) for sel, cid in by_group]
    logged = list(trainer._logs["rewards"]["bestofn"])
    assert [None if math.isnan(x) else round(x, 5) for x in logged] == [
        None if e is None else round(e, 5) for e in expected]
    verify = [s.per_judge["verify"] for s in scoring.completions]  # IFEval: the share of instructions followed
    failed = [i for i, v in enumerate(verify) if v < 1.0]
    assert len(failed) >= 2 and all(logged[i] == 0.0 for i in failed)  # IFEval row 1000 wants 300+ words
    first = trainer.state.log_history[0]
    scored = [e for e in expected if e is not None]
    if scored:
        assert first["rewards/bestofn/mean"] == pytest.approx(sum(scored) / len(scored), abs=1e-5)
    assert first["bestofn/verify"] == pytest.approx(sum(verify) / 8, abs=1e-5)  # the gate's mean, as a metric
    assert first["bestofn/demoted/gate_failed"] == len(failed) / 8
    assert list(trainer._logs["extra"]["bestofn/tier"]) == [s.tier for s in scoring.completions]


@pytest.mark.timeout(900)
def test_sft_and_dpo_trainers_take_the_build_files_as_they_are(tmp_path, tiny, ifeval, loopback):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps(r) + "\n" for r in ifeval[:8]))
    opts = dict(model="vllm:loopback", judge_model="vllm:loopback", base_url=loopback.base_url, panel="default",
                n=4, max_tokens=32, columns=Columns(id="key"), progress=False)
    assert build(prompts, tmp_path / "sft.jsonl", format="sft", **opts).rows > 0
    assert build(prompts, tmp_path / "pairs.jsonl", format="trl-conversational", **opts).rows > 0

    sft = datasets.load_dataset("json", data_files=str(tmp_path / "sft.jsonl"), split="train")
    assert sft[0]["messages"][-1]["role"] == "assistant"
    trainer = trl.SFTTrainer(model=tiny, train_dataset=sft, args=trl.SFTConfig(
        output_dir=str(tmp_path / "sft"), max_steps=1, per_device_train_batch_size=2, max_length=256, **QUIET))
    trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(trainer.state.log_history[-1]["train_loss"])

    pairs = datasets.load_dataset("json", data_files=str(tmp_path / "pairs.jsonl"), split="train")
    trainer = trl.DPOTrainer(model=tiny, train_dataset=pairs, args=trl.DPOConfig(
        output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=2, max_length=256, **QUIET))
    trainer.train()
    assert trainer.state.global_step == 1 and math.isfinite(trainer.state.log_history[-1]["train_loss"])
