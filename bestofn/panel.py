"""Public import path `bestofn.panel`; the code lives in bestofn/config/panel.py."""

from bestofn.config.panel import *  # noqa: F401,F403
from bestofn.config.panel import JudgeConfig, Panel, builtin_panels, load_panel  # noqa: F401
