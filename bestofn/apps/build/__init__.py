"""Build preference datasets at scale: `bestofn build` (resumable, exactly-once) and its Python API.

    from bestofn.apps.build import build
    summary = build("prompts.jsonl", "pairs.jsonl", n=8, panel="default", strategy="best-worst")
"""

from bestofn.apps.build.inputs import Columns, InputIssue, PromptRow, read_prompts
from bestofn.apps.build.report import BuildSummary
from bestofn.apps.build.runner import BuildError, BuildOptions, abuild, build

__all__ = ["BuildError", "BuildOptions", "BuildSummary", "Columns", "InputIssue", "PromptRow", "abuild", "build",
           "read_prompts"]
