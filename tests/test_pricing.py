"""Prices: a model is priced as itself (genai-prices' bundled data, read offline) or not at all, and the calls
without a price are counted and shown beside the money: the `bestofn run` line and every JSON cost."""

import json
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bestofn.backends.pricing import usd_for
from bestofn.records import Usage

MTOK = Usage(prompt_tokens=1_000_000, completion_tokens=1_000_000)


@pytest.mark.parametrize("spec, namesake", [
    ("openai:o3-pro", "openai:o3"),
    ("anthropic:claude-opus-4-6", "anthropic:claude-opus-4"),
])
def test_a_model_is_priced_as_itself_never_as_a_namesake(spec, namesake):
    from genai_prices import Usage as Tokens, calc_price

    mine, theirs = usd_for(spec, MTOK), usd_for(namesake, MTOK)
    assert theirs is not None  # the shorter name is a priced model ...
    assert mine != theirs  # ... and the longer one is not priced as it
    if mine is not None:  # priced: as itself, by the model of its own name
        provider, model = spec.split(":")
        calc = calc_price(Tokens(input_tokens=10**6, output_tokens=10**6), model, provider_id=provider)
        assert calc.model.id == model and mine == pytest.approx(float(calc.total_price))


def test_unknown_and_self_hosted_models_are_unpriced_and_a_snapshot_is_its_model():
    assert usd_for("openai:gpt-4o-mini-2024-07-18", MTOK) == pytest.approx(usd_for("openai:gpt-4o-mini", MTOK))
    for spec in ("openai:gpt-4o-minix", "openai:my-finetune", "anthropic:claude-nonesuch", "vllm:gpt-4o-mini",
                 "local", "vllm-offline:o3"):
        assert usd_for(spec, MTOK) is None, spec


def test_prices_come_from_the_bundled_data_without_the_network(monkeypatch):
    import genai_prices.data_snapshot

    tried = []

    def refuse(*args, **kwargs):
        tried.append(args[-1])
        raise OSError("no network in this test")

    for name in ("connect", "connect_ex"):
        monkeypatch.setattr(socket.socket, name, refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    for spec in ("openai:gpt-4.1-nano", "openai:o4-mini", "anthropic:claude-haiku-4-5", "openai:nonesuch"):
        usd_for(spec, Usage(prompt_tokens=120, completion_tokens=30))
    assert tried == [] and genai_prices.data_snapshot._custom_snapshot is None  # no update fetched or installed


@pytest.fixture
def openai_at(loopback, monkeypatch):
    """`openai:` specs talk to the loopback server (the SDK reads OPENAI_BASE_URL)."""
    import bestofn.backends

    monkeypatch.setenv("OPENAI_BASE_URL", loopback.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    monkeypatch.setattr(bestofn.backends, "_instances", {})  # backends made for these env values only
    return loopback


def test_an_unknown_judge_model_is_counted_unpriced_on_the_run_line_and_in_the_json(openai_at):
    from bestofn.apps.cli.main import app

    args = ["run", "Why is the sky blue?", "-n", "2", "--max-tokens", "24", "--model", "openai:gpt-4o-mini",
            "--judge-model", "openai:no-such-model", "--no-cache"]
    table = CliRunner().invoke(app, args)
    line = " ".join(table.stderr.split())  # rich wraps the line at the runner's width
    generated = 2  # the meter counts a completion as a call: the two answers of gpt-4o-mini have a price
    calls = int(line.split("calls ", 1)[1].split(",")[0])
    assert calls > generated and f"({calls - generated} of {calls} calls unpriced)" in line, line

    result = CliRunner().invoke(app, [*args, "--json"])
    cost = json.loads(result.stdout)["cost"]
    assert cost["unpriced_calls"] == cost["calls"] - generated > 0 and cost["usd"] > 0, cost


def test_the_build_summary_counts_unpriced_calls(openai_at, tmp_path):
    from bestofn.apps.build.runner import build

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": q}) + "\n" for q in ("Why is the sky blue?", "Name a colour.")))
    summary = build(prompts, tmp_path / "out.jsonl", model="openai:gpt-4o-mini", judge_model="openai:nonesuch",
                    n=2, max_tokens=24, progress=False)
    cost = json.loads(summary.model_dump_json())["cost"]
    assert cost["calls"] > cost["unpriced_calls"] > 0 and cost["usd"] > 0, cost


def test_the_ab_figures_count_unpriced_calls(loopback):
    """A self-hosted judge has no price: every A/B item says how many of its calls are unpriced."""
    from bestofn.apps.ab import run_ab
    from bestofn.apps.ab.gold import GoldPair, GoldSet
    from bestofn.backends.vllm import VLLMServerBackend

    panels = Path(__file__).parent / "ab_panels"
    gold = GoldSet(name="toy", kind="pairwise", items=[
        GoldPair(id=f"g{i}", subset="s", prompt=f"question {i}", response_a=f"answer a{i}",
                 response_b=f"answer b{i}", label="a", source=f"x:{i}") for i in range(2)])
    judge = VLLMServerBackend("loopback", base_url=loopback.base_url, flavour="vllm")
    result = run_ab(gold, panels / "ab_correctness.toml", panels / "ab_helpfulness.toml", judge_model=judge,
                    cache=False)
    for label, items in result.panels.items():
        assert all(r.unpriced_calls == r.calls > 0 and r.usd is None for r in items), items
        figures = result.figures["summary"][label]
        assert figures["unpriced_calls"] == figures["fresh_calls"] == 4 and figures["usd_per_1000"] is None
