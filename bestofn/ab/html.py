"""The report as one self-contained HTML page: inline CSS, PNGs as data: URIs, no script, no external URL."""

from __future__ import annotations

import base64
from html import escape
from typing import Any

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:2rem auto;max-width:90rem;padding:0 1rem;color:#222}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5rem 0;font-size:.85rem;display:block;overflow-x:auto}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th:first-child,td:first-child{text-align:left}
th{background:#f5f5f5}tr.baseline td{color:#666;font-style:italic}
.flag{background:#fff4e5;border-left:4px solid #f0a030;padding:.4rem .8rem;margin:.3rem 0}
.ok{background:#eef8ee;border-left:4px solid #5a5;padding:.4rem .8rem}
.note{color:#555;font-size:.85rem}img{max-width:100%;height:auto;display:block;margin:.5rem 0}
.published td{color:#555}tr.published td{color:#777;background:#fafafa}
"""


BESIDE = ("humans", "alpaca_eval_gpt4", "longest")


def _pct(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def _ci(x: float | None, ci: list | None) -> str:
    if x is None:
        return "–"
    if not ci or ci[0] is None:
        return _pct(x, 1)
    return f"{_pct(x, 1)} <span class=note>[{_pct(ci[0])}, {_pct(ci[1])}]</span>"


def _prop(d: dict | None) -> str:
    return "–" if not d or d.get("p") is None else _ci(d["p"], d.get("ci"))


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def _table(head: list[str], rows: list[tuple[str, list[str]]], cls: str = "") -> str:
    out = [f"<table class='{cls}'><tr>" + "".join(f"<th>{escape(h)}</th>" for h in head) + "</tr>"]
    for row_cls, cells in rows:
        out.append(f"<tr class='{row_cls}'>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return "".join(out) + "</table>"


def _summary(figures: dict[str, Any]) -> str:
    pairwise = figures["meta"]["kind"] == "pairwise"
    head = ["judge", "accuracy [95% CI]", "on decided", "Cohen's κ", "Krippendorff's α"]
    head += (["ties", "position consistency", "P(prefer first)", "P(prefer longer)"] if pairwise
             else ["unsafe caught", "safe passed"])
    head += ["no decision", "invalid outputs", "calls / 1k", "tokens / 1k", "seconds / 1k", "$ / 1k"]
    rows = []
    for label, s in figures["summary"].items():
        cells = [escape(label), _ci(s["accuracy"], s["accuracy_ci"]), _pct(s["accuracy_decided"], 1),
                 _num(s["kappa"], "{:.2f}"), _num(s["alpha"], "{:.2f}")]
        if pairwise:
            cells += [_pct(s["tie_rate"]), _prop(s["position_consistency"]), _prop(s["p_prefer_first"]),
                      _prop(s["p_prefer_longer"])]
        else:
            cells += [_prop(s["recall_unsafe"]), _prop(s["specificity"])]
        cells += [_pct(s["undecided_rate"]), _pct(s["invalid_rate"], 1), _num(s["calls_per_1000"]), _num(s["tokens_per_1000"]),
                  _num(s["seconds_per_1000"]), _num(s["usd_per_1000"], "{:.3f}")]
        rows.append(("baseline" if figures["kinds"][label] == "baseline" else "", cells))
    if pairwise:  # published judges beside ours, same-kind columns only
        for r in figures["published"]["rows"]:
            if r["judge"] not in BESIDE:
                continue
            cells = [f"{escape(r['judge'])} <span class=note>(published: AlpacaEval, other data)</span>",
                     _pct(r["accuracy"], 1), "", "", "", "", "", _pct(r["p_prefer_first"]),
                     _pct(r["p_prefer_longer"]), "", "", "", "", _num(r["seconds_per_1000"]),
                     _num(r["usd_per_1000"], "{:.3f}")]
            rows.append(("published", cells))
    return _table(head, rows)


def _subsets(figures: dict[str, Any]) -> str:
    labels = list(figures["by_subset"])
    rows = []
    for subset, n in figures["meta"]["subsets"].items():
        cells = [f"{escape(subset)} <span class=note>(n={n})</span>"]
        for label in labels:
            s = figures["by_subset"][label].get(subset)
            cells.append(_ci(s["accuracy"], s["accuracy_ci"]) if s else "–")
        rows.append(("", cells))
    return _table(["subset", *labels], rows)


def _comparisons(figures: dict[str, Any]) -> str:
    rows = []
    for name, c in figures["comparisons"].items():
        d, m = c["accuracy_diff"], c["mcnemar"]
        lo, hi = d["ci"]
        diff = "–" if d["diff"] is None else f"{d['diff'] * 100:+.1f} pts"
        ci = "–" if lo is None else f"[{lo * 100:+.1f}, {hi * 100:+.1f}]"
        per = "; ".join(f"{escape(k)} {v['diff'] * 100:+.1f}" for k, v in c["by_subset"].items()
                        if v["diff"] is not None)
        rows.append(("", [escape(name), diff, ci, f"{m['a_only']} / {m['b_only']}", _num(m["p_value"], "{:.3g}"),
                          _pct(c["agreement"]), per]))
    notes = "".join(f"<p class='note'>{escape(name)}: {escape(c['note'])}.</p>"
                    for name, c in figures["comparisons"].items() if c.get("note"))
    return _table(["comparison", "accuracy difference", "95% CI", "strictly right: first only / second only",
                   "exact McNemar p", "same decision", "difference by subset (pts)"], rows) + notes


def _published(figures: dict[str, Any]) -> str:
    pub = figures["published"]
    rows = [("", [escape(r["judge"]), _pct(r["accuracy"], 1), _pct(r["p_prefer_first"]),
                  _pct(r["p_prefer_longer"]), _num(r["usd_per_1000"], "{:.2f}"), _num(r["seconds_per_1000"])])
            for r in sorted(pub["rows"], key=lambda r: -(r["accuracy"] or 0))]
    if not rows:
        return "<p class=note>" + escape("; ".join(pub["omitted"])) + "</p>"
    note = (f"<p class=note><b>{escape(pub['label'])}.</b> Their 'human agreement' (agreement with held-out "
            "human annotators) is the same kind of figure as our accuracy, and their P(prefer first) and "
            "P(prefer longer) are our columns of the same name; none of it was measured on this gold set.</p>")
    omitted = "".join(f"<p class=note>{escape(o)}</p>" for o in pub["omitted"])
    return note + _table(["judge (published)", "human agreement", "P(prefer first)", "P(prefer longer)",
                          "$ / 1k", "seconds / 1k"], rows, "published") + omitted


def _flags(figures: dict[str, Any]) -> str:
    out = []
    for label, flags in figures["flags"].items():
        if not flags:
            out.append(f"<div class=ok><b>{escape(label)}</b>: no warning raised.</div>")
        for f in flags:
            out.append(f"<div class=flag><b>{escape(label)}</b>: {escape(f)}</div>")
    return "".join(out)


def _img(images: dict[str, bytes], name: str, alt: str) -> str:
    data = base64.b64encode(images[name]).decode("ascii")
    return f"<img alt='{escape(alt)}' src='data:image/png;base64,{data}'>"


def render_html(figures: dict[str, Any], images: dict[str, bytes]) -> str:
    meta = figures["meta"]
    panels = "".join(
        f"<li><b>{escape(label)}</b>: {escape(info.get('source') or info['panel'])}, aggregate "
        f"{escape(info['aggregate'])}, judges {escape(', '.join(j['name'] + ' (' + j['kind'] + ')' for j in info['judges']))}"
        "</li>" for label, info in meta["panels"].items())
    settings = ", ".join(f"{escape(k)}={escape(str(v))}" for k, v in meta["settings"].items())
    notes = "".join(f"<li>{escape(n)}</li>" for n in meta["notes"])
    conventions = "".join(f"<li>{escape(c)}</li>" for c in meta["conventions"])
    return f"""<!doctype html>
<html lang=en><head><meta charset=utf-8><title>bestofn ab: {escape(meta['gold'])}</title>
<style>{CSS}</style></head><body>
<h1>Judge A/B test on {escape(meta['gold'])}</h1>
<p>{meta['n']} {escape(meta['kind'])} items in {len(meta['subsets'])} subset(s). {settings}</p>
<ul>{panels}</ul>
<h2>Warnings</h2>{_flags(figures)}
<h2>Summary</h2>{_summary(figures)}
<h2>Accuracy by subset</h2>{_img(images, 'accuracy_by_subset', 'accuracy by subset with 95% intervals')}
{_subsets(figures)}
<h2>Panel against panel, and against the reference baseline</h2>{_comparisons(figures)}
<h2>Biases</h2>{_img(images, 'bias', 'position and length biases, consistency, ties and invalid outputs')}
<h2>Cost against accuracy</h2>{_img(images, 'cost_vs_accuracy', 'judging time against accuracy')}
<h2>Published reference points</h2>{_published(figures)}
<h2>How to read this</h2><ul>{conventions}</ul>
{'<h2>Notes on the data</h2><ul>' + notes + '</ul>' if notes else ''}
<p class=note>Every figure on this page is in report.json beside it; per-item decisions in items.jsonl.</p>
</body></html>
"""
