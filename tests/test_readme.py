"""The README's two commands are the contract with new users; .ci/run must run the second one exactly."""

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    lines = (REPO / "README.md").read_text().splitlines()
    return [lines[i + 1] for i, line in enumerate(lines) if line.startswith(("# 1. ", "# 2. "))]


def test_readme_has_the_two_commands_and_ci_runs_the_second_exactly():
    install_and_run, install_and_test = readme_commands()
    assert "bestofn run" in install_and_run and '".[local]"' in install_and_run
    assert "pytest" in install_and_test
    ci = (REPO / ".ci" / "run").read_text().splitlines()
    assert install_and_test in ci
