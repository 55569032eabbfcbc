"""The notebooks in notebooks/ run top to bottom on the embedded model (nbclient, repo root as the working
directory), are committed without outputs, and show what they say they show (their plots render)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")
pytest.importorskip("matplotlib")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = int(os.environ.get("BESTOFN_NOTEBOOK_CELL_TIMEOUT", "600"))  # seconds per cell (loaded CI machines)

# What each notebook must produce: (number of images at least, text that must appear in some output).
EXPECT = {
    "quickstart": (1, ["ChatCompletion ->", "pairs logged to"]),
    "preference_dataset": (1, ["trl-conversational", "kto", "cache hits"]),
    "rubric_ab": (3, ["accuracy_by_subset", "prefer-longer"]),
    "rag_rerank": (1, ["nDCG@3", "cascade"]),
    "grpo_reward": (1, ["rewards/bestofn/mean", "bestofn/verify", "gate_failed"]),
}


def test_the_notebooks_are_there():
    assert {p.stem for p in NOTEBOOKS} == set(EXPECT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_committed_without_outputs(path):
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [c for c in book.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    assert sum(c.cell_type == "markdown" for c in book.cells) >= 4  # they read as documentation
    assert "BESTOFN_CACHE_DIR" in code[0].source  # a fresh cache: the calls really run


def _outputs_text(book) -> tuple[str, int]:
    text, images = [], 0
    for cell in book.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                text.append(out.get("text", ""))
            data = out.get("data", {})
            text.append(str(data.get("text/plain", "")) + str(data.get("text/html", "")))
            images += "image/png" in data
    return "\n".join(text), images


@pytest.mark.timeout(1800)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs(path, tmp_path, monkeypatch):
    book = nbformat.read(path, as_version=4)
    # The kernel inherits this environment; the notebook sets its own fresh BESTOFN_CACHE_DIR anyway.
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    client = nbclient.NotebookClient(book, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(REPO)}})
    started = time.perf_counter()
    client.execute()  # raises CellExecutionError on the first failing cell
    seconds = time.perf_counter() - started
    print(f"{path.stem}: {seconds:.1f} s")
    errors = [o for c in book.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors, errors
    text, images = _outputs_text(book)
    want_images, want_text = EXPECT[path.stem]
    assert images >= want_images, f"{path.stem}: {images} plots, expected {want_images}"
    for needle in want_text:
        assert needle in text, f"{path.stem}: {needle!r} missing from the outputs"
    assert "Traceback" not in text
