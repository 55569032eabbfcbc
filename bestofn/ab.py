"""Public import path `bestofn.ab` (`from bestofn.ab import run_ab`); the code lives in bestofn/apps/ab/."""

from bestofn.apps.ab import *  # noqa: F401,F403
from bestofn.apps.ab import __all__  # noqa: F401
