"""Opt-in: the pooled-logprob pairwise judge on the 1.5B open judge (Qwen2.5-Coder-1.5B-Instruct, Q4_K_M).

    python bench/open_judge.py                                   # prints PATH (downloads once, 1.1 GB)
    BESTOFN_OPEN_JUDGE=PATH python -m pytest -m open_judge tests/test_open_judge_model.py

Skipped, with the reason, when BESTOFN_OPEN_JUDGE does not name the file: CI's default run never downloads it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bestofn.backends import load_backend
from bestofn.config.panel import load_panel
from bestofn.judging import JudgeInput, build_judges
from bestofn.records import Candidate, Message, text_id

GGUF = Path(os.environ.get("BESTOFN_OPEN_JUDGE") or "/nonexistent")
pytestmark = [
    pytest.mark.open_judge,
    pytest.mark.skipif(not GGUF.is_file(), reason="the 1.5B open judge is absent: run bench/open_judge.py and set "
                                                  "BESTOFN_OPEN_JUDGE to the path it prints"),
]

PAIRS = [
    ("What is the capital of France?", "The capital of France is Paris.", "The capital of France is Berlin."),
    ("Write a Python expression for the square of x.", "x ** 2", "x ^ 2  # squares x"),
]


@pytest.mark.parametrize("question, better, worse", PAIRS)
async def test_the_pooled_decision_picks_the_right_answer_whichever_is_named_first(question, better, worse):
    panel = load_panel("pairwise-logprob")
    (judge,) = build_judges(panel, lambda config: load_backend(f"local:{GGUF}"))
    item = JudgeInput(prompt=[Message(role="user", content=question)])
    good, bad = (Candidate(id=text_id(t), index=i, text=t, model="gold") for i, t in enumerate((better, worse)))
    for a, b in ((good, bad), (bad, good)):
        verdict = await judge.match(item, a, b)
        assert verdict.status == "ok", verdict.reason
        assert verdict.details["winner"] == good.id, verdict.details
        assert verdict.usage.completion_tokens == 2
