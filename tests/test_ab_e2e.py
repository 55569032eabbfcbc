"""`bestofn ab` end to end with the local model: two panels on 5 LLMBar pairs, the report, a free rerun, the
HTML page in headless Chromium, and a pointwise XSTest run."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bestofn.apps.cli.main import app
from bestofn.errors import ConfigError

PANELS = Path(__file__).parent / "ab_panels"
pytest.importorskip("matplotlib")


def _ab(args: list[str], cache: Path) -> tuple[int, str, BaseException | None]:
    result = CliRunner().invoke(app, ["ab", *args], env={"BESTOFN_CACHE_DIR": str(cache)})
    return result.exit_code, result.stdout, result.exception


def _shortest_llmbar(data_dir: Path, folder: Path, k: int = 5) -> Path:
    """The k shortest LLMBar Natural pairs, cut from the real file into the same format (a fast fixture)."""
    rows = json.loads((data_dir / "llmbar/LLMBar/Natural/dataset.json").read_text(encoding="utf-8"))
    rows = sorted(rows, key=lambda r: len(r["input"]) + len(r["output_1"]) + len(r["output_2"]))[:k]
    (folder / "Natural").mkdir(parents=True)
    (folder / "Natural" / "dataset.json").write_text(json.dumps(rows), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def llmbar_run(tmp_path_factory, local_backend, data_dir):
    """Panel A: one pointwise rubric judge; panel B: the built-in pairwise panel (both orders)."""
    root = tmp_path_factory.mktemp("ab")
    cache, report = root / "cache", root / "report"
    gold = _shortest_llmbar(data_dir, root / "llmbar")
    args = [str(gold), "--a", str(PANELS / "ab_correctness.toml"),
            "--b", "pairwise", "--judge-max-tokens", "128", "--report", str(report)]
    code, stdout, exc = _ab(args, cache)
    assert code == 0, exc
    return {"root": root, "cache": cache, "report": report, "args": args, "stdout": stdout}


def test_ab_writes_the_report(llmbar_run):
    report = llmbar_run["report"]
    assert {"index.html", "report.json", "items.jsonl"} <= {p.name for p in report.iterdir()}
    journals = sorted(report.glob("journal-*.jsonl"))
    assert len(journals) == 2 and all(len(j.read_text().splitlines()) == 5 for j in journals)
    figures = json.loads((report / "report.json").read_text())
    a, b = "A: ab-correctness", "B: pairwise"
    assert list(figures["summary"]) == [a, b, "prefer-longer", "prefer-first", "random"]
    assert figures["meta"]["n"] == 5 and figures["meta"]["subsets"] == {"Natural": 5}
    assert figures["meta"]["gold"] == "llmbar"
    for label in (a, b):
        s = figures["summary"][label]
        assert s["n"] == 5 and s["fresh_calls"] >= 10 and s["calls_per_1000"] >= 2000
        assert s["tokens_per_1000"] > 0 and s["seconds_per_1000"] > 0
        assert 0 <= s["accuracy"] <= 1 and s["accuracy_ci"][0] <= s["accuracy"] <= s["accuracy_ci"][1]
        assert s["p_prefer_first"]["n"] <= 10
    # a pointwise judge never sees both answers: its two orders always agree
    cons = figures["summary"][a]["position_consistency"]
    assert cons["n"] == 0 or cons["p"] == 1.0
    # the pairwise panel's verdicts carry both orders, so its single-order decisions are measured
    items = [json.loads(x) for x in (report / "items.jsonl").read_text().splitlines()]
    pair_items = [i for i in items if i["judge"] == b]
    assert len(pair_items) == 5 and all(i["verdicts"] == 1 for i in pair_items)
    assert figures["summary"]["prefer-first"]["p_prefer_first"]["p"] == 1.0
    assert f"{a} vs {b}" in figures["comparisons"] and f"{b} vs prefer-longer" in figures["comparisons"]
    assert set(figures["plots"]) == {"accuracy_by_subset", "bias", "cost_vs_accuracy"}
    assert len(figures["published"]["rows"]) > 20 and "other data" in figures["published"]["label"]
    assert "accuracy by subset" in llmbar_run["stdout"] and "prefer-longer" in llmbar_run["stdout"]


def test_ab_rerun_is_free(llmbar_run):
    report = llmbar_run["report"]
    before = {p.name: p.read_text() for p in report.glob("journal-*.jsonl")}
    code, _, exc = _ab(llmbar_run["args"], llmbar_run["cache"])  # same report folder: resumes from the journal
    assert code == 0, exc
    assert {p.name: p.read_text() for p in report.glob("journal-*.jsonl")} == before
    fresh = llmbar_run["root"] / "fresh"  # a new folder, the same call cache: every judge call is a cache hit
    args = [x if x != str(report) else str(fresh) for x in llmbar_run["args"]]
    code, _, exc = _ab(args, llmbar_run["cache"])
    assert code == 0, exc
    first = json.loads((report / "report.json").read_text())["summary"]
    again = json.loads((fresh / "report.json").read_text())["summary"]
    for label in ("A: ab-correctness", "B: pairwise"):
        assert again[label]["fresh_calls"] == 0 and again[label]["cache_hits"] >= 10
        assert again[label]["accuracy"] == first[label]["accuracy"]


class _Urls(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls: list[str] = []
        self.tags: set[str] = set()

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "action", "poster", "data") and v]


PROBE = """<script>
window.addEventListener('load', function () {
  var out = {images: Array.from(document.images).map(function (i) { return i.naturalWidth; }),
             resources: performance.getEntriesByType('resource').map(function (r) { return r.name; })};
  var pre = document.createElement('pre'); pre.id = 'ab-probe'; pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str | None:
    return next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)


def test_ab_html_is_self_contained_and_renders(llmbar_run, tmp_path):
    page = (llmbar_run["report"] / "index.html").read_text(encoding="utf-8")
    parser = _Urls()
    parser.feed(page)
    assert len(parser.urls) == 3 and all(u.startswith("data:image/png;base64,") for u in parser.urls)
    assert "script" not in parser.tags and "link" not in parser.tags and "url(" not in page
    browser = _chromium()
    if browser is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is not installed: .ci/run must apt-get install chromium")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    out = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
         "--virtual-time-budget=5000", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    marker = '<pre id="ab-probe">'
    assert marker in out.stdout, out.stderr[-2000:]
    result = json.loads(out.stdout.split(marker, 1)[1].split("</pre>", 1)[0].replace("&quot;", '"'))
    assert len(result["images"]) == 3 and all(w > 0 for w in result["images"])
    assert not [r for r in result["resources"] if not r.startswith(("data:", "file:"))]


def _short_xstest(data_dir: Path, folder: Path) -> Path:
    """The shortest completion of each (prompt label, human label) kind in XSTest's mistral-instruct file, cut
    into a file of the same format beside a copy of xstest_prompts.csv (a fast fixture)."""
    src = data_dir / "xstest" / "human_labeled_completions" / "xstest_v2_completions_mistralinstruct_gpteval.csv"
    prompts = {r["id"]: r["label"] for r in csv.DictReader(open(data_dir / "xstest/xstest_prompts.csv"))}
    with open(src, encoding="utf-8", newline="") as fh:
        reader = csv.DictReader(fh)
        fields, rows = reader.fieldnames, list(reader)
    shortest: dict[tuple[str, str], dict] = {}
    for row in sorted(rows, key=lambda r: len(r["prompt"]) + len(r["completion"])):
        shortest.setdefault((prompts[row["id"].removeprefix("v2-")], row["final_label"]), row)
    folder.mkdir(parents=True)
    shutil.copy(data_dir / "xstest/xstest_prompts.csv", folder / "xstest_prompts.csv")
    with open(folder / src.name, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields)
        writer.writeheader()
        writer.writerows(shortest.values())
    return folder / src.name


def test_ab_xstest_scores_the_safety_judge(local_backend, data_dir, tmp_path):
    gold = _short_xstest(data_dir, tmp_path / "xstest")
    panel = str(PANELS / "ab_safety.toml")
    code, stdout, exc = _ab([str(gold), "--a", panel, "--b", panel, "--json", "--judge-max-tokens", "128"],
                            tmp_path / "cache")
    assert code == 0, exc
    figures = json.loads(stdout)  # --json: stdout holds nothing but the JSON
    n = figures["meta"]["n"]
    assert figures["meta"]["kind"] == "pointwise" and n == len(figures["meta"]["subsets"]) >= 5
    assert set(figures["summary"]) == {"A: ab-safety", "B: ab-safety", "always-safe", "random"}
    a, b = figures["summary"]["A: ab-safety"], figures["summary"]["B: ab-safety"]
    assert a["fresh_calls"] >= n and b["fresh_calls"] == 0  # the same panel: B is answered from the cache
    assert a["accuracy"] == b["accuracy"] and "recall_unsafe" in a
    assert figures["summary"]["always-safe"]["recall_unsafe"]["p"] == 0.0
    code, _, exc = _ab([str(gold), "--a", str(PANELS / "ab_correctness.toml"), "--b", panel], tmp_path / "cache")
    assert code != 0 and isinstance(exc, ConfigError) and "no safety judge" in str(exc)
