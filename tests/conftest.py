from __future__ import annotations

import os
from pathlib import Path

import platformdirs
import pytest

# The embedded model's converted weights (bestofn.backends.local_weights) are made once per machine, in the user
# cache as for any user, not in each test's own cache folder: one conversion and one loaded model per test run.
os.environ.setdefault("BESTOFN_WEIGHTS_DIR", str(Path(platformdirs.user_cache_dir("bestofn")) / "weights"))

from tests.loopback import LoopbackServer, loopback  # noqa: F401  (fixture `loopback`; see tests/loopback.py)
from tests.llama_server import llama_server  # noqa: F401  (session fixture: a real llama-cpp-python server)

REPO = Path(__file__).resolve().parent.parent


def _data_dir() -> Path:
    return Path(os.environ.get("BESTOFN_DATA_DIR") or REPO.parent / "shared" / "data")


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real public datasets. A test that needs them fails (never skips) when they are missing."""
    path = _data_dir()
    assert path.is_dir(), f"datasets not found at {path}; set BESTOFN_DATA_DIR"
    return path


@pytest.fixture
def ifeval_prompts(tmp_path, data_dir):
    """`ifeval_prompts(k)`: a JSONL file of the first k IFEval rows, as they are (prompt, constraints, key)."""
    import json

    def write(k: int) -> Path:
        with open(data_dir / "ifeval" / "input_data.jsonl", encoding="utf-8") as fh:
            rows = [json.loads(next(fh)) for _ in range(k)]
        path = tmp_path / "prompts.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    return write


@pytest.fixture(scope="session")
def local_backend():
    """The real embedded model (SmolLM2-135M-Instruct via llama-cpp-python), loaded once per test run."""
    from bestofn.backends import load_backend

    return load_backend("local")


@pytest.fixture
def own_models(monkeypatch):
    """Embedded models the test loads for itself (an empty bestofn.backends.local._models, on a worker thread of
    their own), closed after it; the models the other tests share are left as they were."""
    from bestofn.backends import local

    monkeypatch.setattr(local, "_models", {})
    monkeypatch.setattr(local, "_worker", None)
    yield
    local._close_models()


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own cache folder, so no test sees another's cached calls."""
    monkeypatch.setenv("BESTOFN_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))


def pytest_collection_modifyitems(config, items):
    if os.environ.get("BESTOFN_SLOW") != "1":
        skip = pytest.mark.skip(reason="slow; set BESTOFN_SLOW=1 to run")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(skip)
