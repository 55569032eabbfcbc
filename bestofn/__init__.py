"""bestofn: sample n answers, judge them with a panel, return the best, and log preference pairs.

The package is laid out as the flow runs (docs/architecture.md): backends/ sample, pipeline/ generates and
schedules, judging/ scores, ranking/ aggregates and pairs, sinks/ write, apps/ (cli, serve, wrap, build, ab,
rerank) sit on top. The names below, `bestofn.panel`, `bestofn.export`, `bestofn.ab`, `bestofn.records` and
`bestofn.errors` are the public import paths.
"""

from bestofn.apps.build import abuild, build
from bestofn.apps.rerank import arerank, rerank
from bestofn.apps.wrap import wrap
from bestofn.config.panel import Panel, load_panel
from bestofn.errors import BestofnError, ConfigError
from bestofn.pipeline.select import aselect, select
from bestofn.records import Candidate, Cost, Message, PreferencePair, Selection, Verdict

__version__ = "0.1.0"
__all__ = [
    "BestofnError",
    "Candidate",
    "ConfigError",
    "Cost",
    "Message",
    "Panel",
    "PreferencePair",
    "Selection",
    "Verdict",
    "abuild",
    "arerank",
    "aselect",
    "build",
    "load_panel",
    "rerank",
    "select",
    "wrap",
]
