"""`bestofn run` through typer's CliRunner, over the loopback protocol server: the exit code when no candidate
could be ranked is 1 in both modes (DESIGN part B), and --json still prints the Selection on stdout."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from bestofn.apps.cli.main import app
from bestofn.records import Selection
from tests.loopback import completion_body


def _run(loopback, *extra):
    args = ["run", "Why is the sky blue?", "-n", "2", "--model", "vllm:loopback", "--judge-model", "vllm:loopback",
            "--base-url", loopback.base_url, "--no-cache", *extra]
    return CliRunner().invoke(app, args)


@pytest.mark.parametrize("as_json", [True, False], ids=["json", "table"])
def test_nothing_ranked_exits_1_in_both_modes(loopback, as_json):
    # every judge reply breaks its schema's range: every verdict is invalid, no candidate meets the quorum
    loopback.hook = lambda req: ((200, completion_body('{"reasoning": "great", "score": 10000}'))
                                 if (req.body or {}).get("response_format") else None)
    result = _run(loopback, *(["--json"] if as_json else []))
    assert result.exit_code == 1, result.output
    if as_json:
        sel = Selection.model_validate(json.loads(result.stdout))
        assert sel.best is None and sel.ranking == [] and len(sel.candidates) == 2


def test_a_ranked_run_exits_0_with_json(loopback):
    result = _run(loopback, "--json")
    assert result.exit_code == 0, result.output
    assert Selection.model_validate(json.loads(result.stdout)).best is not None
