"""bestofn: sample n answers, judge them with a panel, return the best, and log preference pairs."""

from bestofn.errors import BestofnError, ConfigError
from bestofn.panel import Panel, load_panel
from bestofn.records import Candidate, Cost, Message, PreferencePair, Selection, Verdict
from bestofn.rerank import arerank, rerank  # the function shadows the subpackage name, as select does
from bestofn.select import aselect, select
from bestofn.wrap import wrap

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
    "arerank",
    "aselect",
    "load_panel",
    "rerank",
    "select",
    "wrap",
]
