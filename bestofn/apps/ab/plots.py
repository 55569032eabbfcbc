"""The report's three plots: the data behind each (it goes into report.json) and PNGs drawn from that data
with matplotlib's Agg backend (no display, no network)."""

from __future__ import annotations

import io
from typing import Any

from bestofn.errors import MissingExtraError

PUBLISHED_MARKED = ("humans", "alpaca_eval_gpt4", "longest")
FLOOR_SECONDS = 0.1  # baselines cost nothing; a log axis needs a positive value


def _p(d: dict | None, key: str = "p") -> float | None:
    return None if not d else d.get(key)


def _ci(d: dict | None) -> tuple[float | None, float | None]:
    ci = (d or {}).get("ci") or (None, None)
    return ci[0], ci[1]


def plot_data(figures: dict[str, Any]) -> dict[str, Any]:
    summary, subsets = figures["summary"], figures["by_subset"]
    names = ["all", *figures["meta"]["subsets"]]
    acc: dict[str, Any] = {"subsets": names, "chance": 0.5, "series": {}, "kinds": figures["kinds"]}
    for label, s in summary.items():
        rows = [s] + [subsets[label].get(n, {}) for n in names[1:]]
        acc["series"][label] = {"accuracy": [r.get("accuracy") for r in rows],
                                "lo": [(r.get("accuracy_ci") or [None, None])[0] for r in rows],
                                "hi": [(r.get("accuracy_ci") or [None, None])[1] for r in rows]}
    pairwise = figures["meta"]["kind"] == "pairwise"
    metrics = (["P(prefer first)", "P(prefer longer)", "position consistency", "tie rate", "invalid rate"]
               if pairwise else ["unsafe caught", "safe passed", "flag rate", "invalid rate"])
    bias: dict[str, Any] = {"metrics": metrics, "reference": 0.5, "series": {}, "published": {}}
    for label, s in summary.items():
        if pairwise:
            parts = [s["p_prefer_first"], s["p_prefer_longer"], s["position_consistency"],
                     {"p": s["tie_rate"]}, {"p": s["invalid_rate"]}]
        else:
            parts = [s["recall_unsafe"], s["specificity"], {"p": s["flag_rate"]}, {"p": s["invalid_rate"]}]
        bias["series"][label] = {"values": [_p(x) for x in parts], "lo": [_ci(x)[0] for x in parts],
                                 "hi": [_ci(x)[1] for x in parts]}
    for row in figures["published"]["rows"]:
        if row["judge"] in PUBLISHED_MARKED:
            bias["published"][row["judge"]] = [row["p_prefer_first"], row["p_prefer_longer"], None, None, None]
    cost: dict[str, Any] = {"x": "seconds per 1,000 items (log)", "y": "accuracy", "ours": [], "published": []}
    for label, s in summary.items():
        lo, hi = s["accuracy_ci"]
        cost["ours"].append({"judge": label, "kind": figures["kinds"][label], "accuracy": s["accuracy"], "lo": lo,
                             "hi": hi, "seconds_per_1000": s["seconds_per_1000"],
                             "calls_per_1000": s["calls_per_1000"]})
    for row in figures["published"]["rows"]:
        if row["accuracy"] is not None and row["seconds_per_1000"] is not None:
            cost["published"].append({"judge": row["judge"], "accuracy": row["accuracy"],
                                      "seconds_per_1000": row["seconds_per_1000"]})
    return {"accuracy_by_subset": acc, "bias": bias, "cost_vs_accuracy": cost}


def _plt():
    try:
        import matplotlib
    except ImportError as exc:
        raise MissingExtraError("the HTML report", "stats", "matplotlib") from exc
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight", metadata={"Software": None})
    _plt().close(fig)
    return buf.getvalue()


def _err(values: list, lo: list, hi: list) -> list[list[float]]:
    return [[(v - lo_) if None not in (v, lo_) else 0 for v, lo_ in zip(values, lo)],
            [(hi_ - v) if None not in (v, hi_) else 0 for v, hi_ in zip(values, hi)]]


def _nz(values: list) -> list[float]:
    return [float("nan") if v is None else v for v in values]


def accuracy_plot(data: dict[str, Any]) -> bytes:
    plt = _plt()
    names, series = data["subsets"], data["series"]
    fig, ax = plt.subplots(figsize=(max(6.0, 1.3 * len(names) + 2), 4.2))
    width = 0.8 / max(1, len(series))
    for k, (label, s) in enumerate(series.items()):
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(names))]
        baseline = data["kinds"].get(label) == "baseline"
        ax.errorbar(xs, _nz(s["accuracy"]), yerr=_err(s["accuracy"], s["lo"], s["hi"]), fmt="s" if baseline else "o",
                    capsize=3, label=label, markersize=5 if baseline else 7, alpha=0.6 if baseline else 1.0)
    ax.axhline(data["chance"], color="grey", linestyle="--", linewidth=1, label="chance (50%)")
    ax.set_xticks(range(len(names)), names, rotation=20, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy against humans (95% CI)")
    ax.set_title("Accuracy by subset")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.22), ncol=3)
    return _png(fig)


def bias_plot(data: dict[str, Any]) -> bytes:
    plt = _plt()
    metrics, series = data["metrics"], data["series"]
    published = data.get("published", {})
    groups = len(series) + len(published)
    fig, ax = plt.subplots(figsize=(max(7.0, 1.6 * len(metrics) + 3), 4.2))
    width = 0.8 / max(1, groups)
    k = 0
    for label, s in series.items():
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(metrics))]
        ax.bar(xs, _nz(s["values"]), width, yerr=_err(s["values"], s["lo"], s["hi"]), capsize=2, label=label)
        k += 1
    for judge, values in published.items():
        xs = [i - 0.4 + width * (k + 0.5) for i in range(len(metrics))]
        ax.bar(xs, _nz(values), width, color="white", edgecolor="grey", hatch="//",
               label=f"{judge} (published, other data)")
        k += 1
    ax.axhline(data["reference"], color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(metrics)), metrics)
    ax.set_ylim(0, 1.05)
    ax.set_title("Biases and failure rates (dashed: 50%, no position or length preference)")
    ax.legend(fontsize=7, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.1))
    return _png(fig)


def cost_plot(data: dict[str, Any]) -> bytes:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.0, 4.2))
    pub = data["published"]
    if pub:
        ax.scatter([max(FLOOR_SECONDS, p["seconds_per_1000"]) for p in pub], [p["accuracy"] for p in pub],
                   facecolors="none", edgecolors="grey", label="AlpacaEval leaderboard (published, other data)")
        for p in pub:
            if p["judge"] in PUBLISHED_MARKED:
                ax.annotate(p["judge"], (max(FLOOR_SECONDS, p["seconds_per_1000"]), p["accuracy"]), fontsize=7,
                            color="grey", xytext=(3, 3), textcoords="offset points")
    for o in data["ours"]:
        x = max(FLOOR_SECONDS, o["seconds_per_1000"] or 0.0)
        yerr = [[o["accuracy"] - o["lo"]], [o["hi"] - o["accuracy"]]] if o["lo"] is not None else None
        ax.errorbar([x], [o["accuracy"]], yerr=yerr, fmt="s" if o["kind"] == "baseline" else "o", capsize=3,
                    label=o["judge"] + (" (≈0 s)" if x == FLOOR_SECONDS else ""))
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("judging time, seconds per 1,000 items (log)")
    ax.set_ylabel("accuracy against humans")
    ax.set_ylim(0, 1)
    ax.set_title("Cost against accuracy")
    ax.legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.15))
    return _png(fig)


def render_plots(figures: dict[str, Any]) -> dict[str, bytes]:
    plots = figures["plots"]
    return {"accuracy_by_subset": accuracy_plot(plots["accuracy_by_subset"]), "bias": bias_plot(plots["bias"]),
            "cost_vs_accuracy": cost_plot(plots["cost_vs_accuracy"])}
