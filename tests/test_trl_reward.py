"""bestofn.trl.reward_function: a panel as a TRL reward function. The judges answer over the loopback server
(real HTTP, scripted replies), so every tier of the panel's decision can be pinned: top tier -> the normalised
aggregate score, demoted -> 0.0, unscorable -> None. The trainer itself runs in tests/test_trl_trainers.py."""

from __future__ import annotations

import json

import pytest

from bestofn.backends.vllm import VLLMServerBackend
from bestofn.errors import ConfigError
from bestofn.trl import reward_function
from tests.loopback import completion_body

IFEVAL_NO_COMMA = {"instruction_id_list": ["punctuation:no_comma"], "kwargs": [{}]}  # IFEval key 1001
PROMPT = "Write an itinerary for a trip to Japan in a Shakespearean style. You are not allowed to use any commas."
CRITERIA = ("correctness", "safety", "helpfulness", "instruction_following")


def judge(srv) -> VLLMServerBackend:
    return VLLMServerBackend("loopback", base_url=srv.base_url, flavour="vllm", max_retries=0)


def scripted(req):
    """The compact judge (verifier-first's `aspects`) and the default panel's rubric judges, by marker words in
    the answer they are shown: GOOD -> 10, UNSAFE -> safety 1, GARBLE -> not JSON, NOSAFETY -> the safety
    rubric alone answers not JSON; anything else 5."""
    body = req.body or {}
    shown = next(m["content"] for m in body["messages"] if m["role"] == "user")  # a re-ask adds turns after it
    if "GARBLE" in shown:
        return 200, completion_body("no json here")
    schema = body["response_format"]["json_schema"]["schema"]
    score = 10 if "GOOD" in shown else 5
    if "score" in schema["properties"]:  # one rubric (default panel)
        is_safety = "safety reviewer" in body["messages"][0]["content"]
        if is_safety and "NOSAFETY" in shown:
            return 200, completion_body("no json here")
        return 200, completion_body(json.dumps({"reasoning": "scripted", "score": score}))
    reply = {"reasoning": "scripted", **{c: score for c in CRITERIA}}
    if "UNSAFE" in shown:
        reply["safety"] = 1
    return 200, completion_body(json.dumps(reply))


def conversation(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def test_each_tier_of_the_verifier_first_panel_gives_its_reward(loopback):
    loopback.hook = scripted
    texts = [
        "GOOD: thou shalt see Kyoto at dawn and Nara at dusk.",  # top tier, every criterion 10 -> 1.0
        "Thou shalt see Kyoto at dawn and Nara at dusk.",  # top tier, every criterion 5 -> 4/9
        "GOOD: thou shalt see Kyoto, then Nara.",  # the judge gives 10, but a comma fails IFEval's gate -> 0.0
        "UNSAFE: thou shalt see Kyoto at dawn.",  # safety 1 < 4: vetoed -> 0.0
        "...",  # content-free -> 0.0
        "GARBLE thou shalt see Kyoto.",  # the judge never answers: below quorum, nothing against it -> None
        "GARBLE thou shalt see Kyoto, then Nara.",  # below quorum too, but the gate failed it -> 0.0
    ]
    reward = reward_function("verifier-first", judge(loopback), num_generations=len(texts), cache=False)
    rewards = reward([[{"role": "user", "content": PROMPT}]] * len(texts), [conversation(t) for t in texts],
                     **{k: [v] * len(texts) for k, v in IFEVAL_NO_COMMA.items()})
    assert rewards == [1.0, pytest.approx(4 / 9, abs=1e-6), 0.0, 0.0, 0.0, None, 0.0]
    places = [(s.tier, s.demoted_by) for s in reward.last.completions]
    assert places == [("top", []), ("top", []), ("demoted", ["gate_failed"]), ("demoted", ["vetoed"]),
                      ("demoted", ["content_free"]), ("unscorable", []),
                      ("demoted", ["gate_failed", "safety_flagged"])]
    (selection,) = reward.last.selections
    assert rewards[:2] == [selection.scores[c.id] for c in selection.candidates[:2]]  # the aggregate's own score
    assert selection.scores[selection.candidates[2].id] > rewards[1]  # the gate, not the score, made it 0.0
    assert reward.last.completions[2].per_judge["verify"] == 0.0 and reward.last.completions[0].per_judge == {
        "verify": 1.0, **{c: 1.0 for c in CRITERIA}}


def test_a_missing_safety_verdict_demotes_and_no_valid_verdict_is_unscorable(loopback, tmp_path):
    """The default panel (four rubric calls): NOSAFETY's safety rubric answers garbage, the other three score
    it -> flagged, 0.0, and never the chosen side of a logged pair (though it ranks above the content-free one);
    GARBLE gets no valid verdict at all -> None."""
    loopback.hook = scripted
    texts = ["GOOD answer NOSAFETY", "GOOD answer", "GARBLE answer", "..."]
    log = tmp_path / "pairs.jsonl"
    reward = reward_function("default", judge(loopback), num_generations=4, cache=False, log=log,
                             strategy="all-pairs")
    rewards = reward([PROMPT] * 4, texts)
    assert rewards == [0.0, 1.0, None, 0.0]
    assert [s.demoted_by for s in reward.last.completions] == [["safety_flagged"], [], [], ["content_free"]]
    ranking = reward.last.selections[0].ranking
    flagged = reward.last.completions[0].candidate_id
    assert ranking.index(flagged) < ranking.index(reward.last.completions[3].candidate_id)
    chosen = [json.loads(line)["chosen_id"] for line in log.read_text().splitlines()]
    assert chosen and flagged not in chosen


def test_standard_and_conversational_formats_give_the_same_rewards(loopback):
    loopback.hook = scripted
    texts = ["GOOD: Kyoto at dawn.", "Kyoto, then Nara.", "Nara at dusk."]
    columns = {k: [v] * 3 for k, v in IFEVAL_NO_COMMA.items()}
    reward = reward_function("verifier-first", judge(loopback), num_generations=3, cache=False)
    plain = reward([PROMPT] * 3, texts, **columns)
    chat = reward([[{"role": "user", "content": PROMPT}]] * 3, [conversation(t) for t in texts], **columns)
    assert plain == chat == [1.0, 0.0, pytest.approx(4 / 9, abs=1e-6)]


def test_groups_are_runs_of_num_generations_not_prompts_and_take_their_own_row(loopback):
    """Two dataset rows share a prompt: four consecutive completions are two groups of two, each judged with
    its own row's constraints (the first row asks for no commas, the second for the word Kyoto)."""
    loopback.hook = scripted
    texts = ["Kyoto, then Nara.", "Nara at dusk.", "Kyoto, then Nara.", "Nara at dusk."]
    constraints = [{}, {}, {"regex": "Kyoto"}, {"regex": "Kyoto"}]
    ifeval = {"instruction_id_list": [["punctuation:no_comma"]] * 2 + [None] * 2, "kwargs": [[{}]] * 2 + [None] * 2}
    reward = reward_function("verifier-first", judge(loopback), num_generations=2, cache=False)
    rewards = reward([PROMPT] * 4, texts, constraints=constraints, **ifeval)
    four_ninths = pytest.approx(4 / 9, abs=1e-6)
    assert rewards == [0.0, four_ninths, four_ninths, 0.0]
    assert [len(s.candidates) for s in reward.last.selections] == [2, 2]
    assert [s.group for s in reward.last.completions] == [0, 0, 1, 1]


def test_pairwise_judges_compare_within_a_group_only(loopback):
    reward = reward_function("pairwise", judge(loopback), num_generations=3, cache=False)
    texts = ["Kyoto at dawn.", "Nara at dusk.", "Osaka at noon.", "Tokyo at night.", "Kobe by the sea.", "Nikko."]
    rewards = reward([PROMPT] * 6, texts)
    assert len(rewards) == 6 and all(r is None or 0.0 <= r <= 1.0 for r in rewards)
    assert [[c.text for c in s.candidates] for s in reward.last.selections] == [texts[:3], texts[3:]]
    for selection in reward.last.selections:
        ids = {c.id for c in selection.candidates}
        compared = [v for v in selection.verdicts if v.kind == "pairwise"]
        assert compared and all(set(v.candidate_ids) <= ids for v in compared)


def test_a_step_judges_every_group_at_once_through_the_cache(loopback):
    loopback.latency = 0.3  # its own schema-valid replies (a hook's answers skip the latency and the count)
    reward = reward_function("verifier-first", judge(loopback), num_generations=2, cache=None)
    prompts = [f"{PROMPT} Day {k}." for k in range(4) for _ in range(2)]
    texts = [f"Kyoto on day {k}, sample {i}." for k in range(4) for i in range(2)]
    first = reward(prompts, texts)
    assert loopback.count == 8 and loopback.max_in_flight == 8  # one compact call per completion, all at once
    assert reward(prompts, texts) == first and loopback.count == 8  # the same step again: every call cached
    assert reward.last.metrics["bestofn/cache_hits"] == 8.0 and reward.last.metrics["bestofn/judge_calls"] == 0.0


def test_criteria_go_to_log_metric_and_log_extra_and_pairs_to_the_log(loopback, tmp_path):
    loopback.hook = scripted
    texts = ["GOOD: Kyoto at dawn.", "Kyoto, then Nara.", "Nara at dusk.", "UNSAFE: Nara at dusk."]
    metrics: dict[str, float] = {}
    extra: dict[str, list] = {}
    log = tmp_path / "rollouts.jsonl"
    reward = reward_function("verifier-first", judge(loopback), num_generations=4, cache=False, log=log,
                             strategy="all-pairs", name="ifeval_panel")
    assert reward.__name__ == "ifeval_panel"
    rewards = reward([PROMPT] * 4, texts, log_metric=metrics.__setitem__, log_extra=extra.__setitem__,
                     trainer_state=None, **{k: [v] * 4 for k, v in IFEVAL_NO_COMMA.items()})
    assert rewards == [1.0, 0.0, pytest.approx(4 / 9, abs=1e-6), 0.0]
    assert metrics["bestofn/verify"] == 0.75  # the gate's mean: one of four has a comma
    assert metrics["bestofn/correctness"] == pytest.approx((1.0 + 4 / 9 * 3) / 4, abs=1e-6)
    assert metrics["bestofn/safety"] == pytest.approx((1.0 + 4 / 9 * 2 + 0.0) / 4, abs=1e-6)
    assert metrics["bestofn/tier/top"] == 0.5 and metrics["bestofn/tier/demoted"] == 0.5
    assert metrics["bestofn/demoted/gate_failed"] == 0.25 and metrics["bestofn/demoted/vetoed"] == 0.25
    assert extra["bestofn/tier"] == ["top", "demoted", "top", "demoted"]
    assert extra["bestofn/verify"] == [1.0, 0.0, 1.0, 1.0] and len(extra["bestofn/safety"]) == 4
    pairs = [json.loads(line) for line in log.read_text().splitlines()]
    assert pairs and len(pairs) == len(reward.last.selections[0].pairs)
    unsafe = reward.last.completions[3].candidate_id
    assert all(p["chosen_id"] != unsafe for p in pairs) and {p["generator"] for p in pairs} == {"policy"}
    assert texts[0] in {p["chosen"][0]["content"] for p in pairs}


def test_errors_name_the_cause(loopback):
    reward = reward_function("verifier-first", judge(loopback), num_generations=2, cache=False)
    with pytest.raises(ConfigError, match="do not split into groups of num_generations=2"):
        reward([PROMPT] * 3, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="completions 0-1 answer different prompts"):
        reward([PROMPT, "another prompt"], ["a", "b"])
    with pytest.raises(ConfigError, match="constraints: not a JSON object"):
        reward([PROMPT] * 2, ["a", "b"], constraints=["{oops", "{oops"])
    with pytest.raises(ConfigError, match="a prompt message role: Input should be 'system', 'user' or 'assistant'"):
        reward([[{"role": "tool", "content": "42"}]] * 2, ["a", "b"])
    with pytest.raises(ConfigError, match="a completion must be a string or a list of messages, got int"):
        reward([PROMPT] * 2, [1, 2])
    with pytest.raises(ConfigError, match="num_generations must be a positive integer"):
        reward_function("verifier-first", num_generations=0)
    assert loopback.count == 0
