"""The A/B report page (bestofn/ab/html.py + report.html.j2) from a report built without a model: hand-made
per-item results go through the real figures, plots and page writer. The model-backed run is in test_ab_e2e.py."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from bestofn.apps.ab import AbResult
from bestofn.apps.ab.baselines import baselines, combine
from bestofn.apps.ab.gold import GoldPair, GoldPoint, GoldSet
from bestofn.apps.ab.metrics import ItemResult
from bestofn.apps.ab.report import build_figures, write_report

pytest.importorskip("scipy")
pytest.importorskip("matplotlib")

HOSTILE = "<script>alert(1)</script>"


def _info(name: str) -> dict:
    return {"panel": name, "source": None, "aggregate": "mean", "fingerprint": "f",
            "judges": [{"name": f"judge {name}", "kind": "rubric", "rubric": "r", "scale": [1, 10]}]}


def hostile_result(kind: str = "pairwise", n: int = 12) -> AbResult:
    """A finished A/B run whose panel, judge, subset and gold names and notes all carry a script tag."""
    subsets = [HOSTILE, "plain"]
    if kind == "pairwise":
        items = [GoldPair(id=f"g{i}", subset=subsets[i % 2], prompt=f"question {i} {HOSTILE}",
                          response_a="a" * (5 + i), response_b="b" * (9 - i % 5), label="a" if i % 3 else "b",
                          source=f"x:{i}") for i in range(n)]
    else:
        items = [GoldPoint(id=f"g{i}", subset=subsets[i % 2], prompt=f"question {i}", response=f"answer {i}",
                           label="unsafe" if i % 3 == 0 else "safe", source=f"x:{i}") for i in range(n)]
    gold = GoldSet(name=f"gold {HOSTILE}", kind=kind, items=items, notes=[f"a note {HOSTILE}"])

    def results(shift: int) -> list[ItemResult]:
        out = []
        for i, item in enumerate(items):
            cost = {"verdicts": 2, "invalid": int(i % 7 == 0), "calls": 2, "prompt_tokens": 300,
                    "completion_tokens": 40, "seconds": 0.5 + 0.1 * i}
            if kind == "pairwise":
                first = None if (i + shift) % 11 == 0 else item.label if (i + shift) % 4 else "tie"
                second = item.label if (i + shift) % 3 else "b"
                out.append(ItemResult(item_id=item.id, subset=item.subset, gold=item.label,
                                      pred=combine(first, second), first=first, second=second,
                                      len_a=len(item.response_a), len_b=len(item.response_b), **cost))
            else:
                pred = item.label if (i + shift) % 4 else "safe"
                out.append(ItemResult(item_id=item.id, subset=item.subset, gold=item.label, pred=pred, **cost))
        return out

    a, b = f"A: {HOSTILE}", "B: plain"
    result = AbResult(gold=gold, settings={"seed": 0, "judge_model": HOSTILE, "cache": False},
                      panels={a: results(0), b: results(1)}, panel_info={a: _info(HOSTILE), b: _info("plain")},
                      baselines=baselines(items, 0))
    result.figures = build_figures(result)
    return result


class _Page(HTMLParser):
    """Tags, URLs, and the text of each <li> and <td> as a browser would show it."""

    def __init__(self):
        super().__init__()
        self.tags: set[str] = set()
        self.urls: list[str] = []
        self.cells: list[str] = []
        self._open: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        self.urls += [v for k, v in attrs if k in ("src", "href", "srcset", "action", "poster", "data") and v]
        if tag in ("li", "td", "title", "h1"):
            self._open.append("")

    def handle_endtag(self, tag):
        if tag in ("li", "td", "title", "h1"):
            self.cells.append(self._open.pop())

    def handle_data(self, data):
        if self._open:
            self._open[-1] += data


@pytest.mark.parametrize("kind", ["pairwise", "pointwise"])
def test_names_from_the_data_are_escaped_and_the_page_is_self_contained(kind, tmp_path):
    page = write_report(hostile_result(kind), tmp_path)["html"].read_text(encoding="utf-8")
    parsed = _Page()
    parsed.feed(page)
    assert "script" not in parsed.tags and "<script" not in page.lower()
    shown = parsed.cells
    assert f"bestofn ab: gold {HOSTILE}" in shown and f"Judge A/B test on gold {HOSTILE}" in shown  # title, h1
    assert any(c.startswith(f"A: {HOSTILE}: {HOSTILE}, aggregate mean, judges judge {HOSTILE} (rubric)")
               for c in shown)  # the panel list: label, panel and judge names
    assert f"A: {HOSTILE}" in shown  # its summary row
    assert f"{HOSTILE} (n=6)" in shown  # the subset row
    assert f"a note {HOSTILE}" in shown  # the gold set's notes
    assert f"A: {HOSTILE} vs B: plain" in shown  # a comparison row
    assert len(parsed.urls) == 3 and all(u.startswith("data:image/png;base64,") for u in parsed.urls)
    assert "link" not in parsed.tags and "url(" not in page
