"""Public import path `bestofn.trl` (`bestofn.trl.reward_function`: a panel as a TRL reward function); the code
lives in bestofn/apps/trl.py."""

from bestofn.apps.trl import *  # noqa: F401,F403
from bestofn.apps.trl import RewardFunction, Scored, Scoring, place, reward_function  # noqa: F401
