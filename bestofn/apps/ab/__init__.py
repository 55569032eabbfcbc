"""A/B tests of judge panels against human labels: `bestofn ab GOLD --a PANEL --b PANEL`.

    from bestofn.apps.ab import run_ab
    result = run_ab("../shared/data/llmbar/LLMBar", "default", "my_panel.toml", limit=10, report="out/")

gold.py loads the labelled sets, runner.py runs a panel on them through the pipeline's own judges and
aggregation, baselines.py adds trivial judges, metrics.py computes the statistics and report.py writes them
(a terminal table; with a report folder, a self-contained HTML page and a JSON of every figure).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bestofn.apps.ab.baselines import baselines
from bestofn.apps.ab.gold import GoldSet, load_gold
from bestofn.apps.ab.metrics import ItemResult
from bestofn.apps.ab.runner import Progress, RunSettings, arun_panel
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache
from bestofn.config.panel import Panel
from bestofn.sync import run_sync

__all__ = ["AbResult", "arun_ab", "run_ab", "load_gold", "RunSettings"]


@dataclass
class AbResult:
    gold: GoldSet
    settings: dict[str, Any]
    panels: dict[str, list[ItemResult]] = field(default_factory=dict)  # label -> results
    panel_info: dict[str, dict[str, Any]] = field(default_factory=dict)
    baselines: dict[str, list[ItemResult]] = field(default_factory=dict)
    figures: dict[str, Any] = field(default_factory=dict)  # filled by report.build_figures


async def arun_ab(
    gold: str | Path | GoldSet,
    a: str | Path | Panel,
    b: str | Path | Panel,
    *,
    limit: int | None = None,
    seed: int = 0,
    judge_model: str | Backend | None = None,
    base_url: str | None = None,
    judge_max_tokens: int | None = None,
    cache: Cache | str | Path | bool | None = None,
    report: str | Path | None = None,
    progress: Progress | None = None,
) -> AbResult:
    """Run panels A and B (and the baselines) on the gold set; with `report`, journal every item there (a
    rerun resumes) and write index.html and report.json."""
    from bestofn.apps.ab import report as reporting

    the_gold = gold if isinstance(gold, GoldSet) else load_gold(gold)
    the_gold = the_gold.limited(limit, seed)
    settings = RunSettings(judge_model=judge_model, base_url=base_url, seed=seed,
                           judge_max_tokens=judge_max_tokens, cache=cache)
    out_dir = Path(report) if report is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    result = AbResult(gold=the_gold, settings={
        "gold": str(gold if not isinstance(gold, GoldSet) else gold.name), "limit_per_subset": limit,
        "seed": seed, "judge_model": getattr(judge_model, "spec", judge_model), "base_url": base_url,
        "judge_max_tokens": settings.judge_max_tokens, "cache": cache is not False})
    for tag, panel in (("A", a), ("B", b)):
        results, info = await arun_panel(panel, the_gold, settings, journal_dir=out_dir, label=tag,
                                         progress=progress)
        label = f"{tag}: {info['panel']}"
        result.panels[label], result.panel_info[label] = results, info
    result.baselines = baselines(the_gold.items, seed)
    result.figures = reporting.build_figures(result)
    if out_dir is not None:
        reporting.write_report(result, out_dir)
    return result


def run_ab(gold: str | Path | GoldSet, a: str | Path | Panel, b: str | Path | Panel, **options: Any) -> AbResult:
    """Sync wrapper of `arun_ab` (same keyword arguments)."""
    return run_sync(arun_ab(gold, a, b, **options))
