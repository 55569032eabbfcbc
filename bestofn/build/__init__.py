"""Build preference datasets at scale: `bestofn build` (resumable, exactly-once) and its Python API.

    from bestofn.build import build
    summary = build("prompts.jsonl", "pairs.jsonl", n=8, panel="default", strategy="best-worst")
"""

from bestofn.build.inputs import Columns, InputIssue, PromptRow, read_prompts
from bestofn.build.report import BuildSummary
from bestofn.build.runner import BuildError, BuildOptions, abuild, build

__all__ = ["BuildError", "BuildOptions", "BuildSummary", "Columns", "InputIssue", "PromptRow", "abuild", "build",
           "read_prompts"]
