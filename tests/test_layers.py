"""The one-way flow is enforced: import-linter's contracts in pyproject.toml ([tool.importlinter]) over the real
import graph of the package (grimp), so that nothing low imports something high and no circle comes back."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def lint(tmp_path: Path, extra: str = "") -> subprocess.CompletedProcess:
    """Run lint-imports on a copy of the package (so a test can add an import without touching the tree)."""
    import shutil

    shutil.copytree(ROOT / "bestofn", tmp_path / "bestofn", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    if extra:
        target = tmp_path / extra.split("::")[0]
        target.write_text(target.read_text() + "\n" + extra.split("::")[1] + "\n")
    command = [str(Path(sys.executable).with_name("lint-imports")), "--config", "pyproject.toml", "--no-cache"]
    return subprocess.run(command, cwd=tmp_path, env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                          capture_output=True, text=True)


def test_the_layers_hold(tmp_path):
    out = lint(tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "2 kept, 0 broken" in out.stdout


def test_a_low_module_importing_a_high_one_breaks_the_contract(tmp_path):
    out = lint(tmp_path, "bestofn/ranking/pairs.py::from bestofn.pipeline import select as _up")
    assert out.returncode != 0 and "bestofn.ranking.pairs -> bestofn.pipeline.select" in out.stdout


def test_a_stage_importing_a_public_re_export_breaks_the_contract(tmp_path):
    out = lint(tmp_path, "bestofn/judging/base.py::import bestofn.panel as _shim")
    assert out.returncode != 0 and "bestofn.judging.base -> bestofn.panel" in out.stdout
