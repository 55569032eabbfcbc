"""The judge seam: a judge judges a prompt's candidates and returns Verdicts (one method)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from bestofn.backends.base import Backend
from bestofn.config.panel import JudgeConfig
from bestofn.records import Candidate, Message, Verdict


#: a judge's token limit when neither --judge-max-tokens nor the judge's TOML sets one
DEFAULT_JUDGE_MAX_TOKENS = 384
#: a judge's reasoning budget in tokens when its TOML sets no `reasoning_tokens`: past it, a backend that can (the
#: embedded model's batched engine) ends the reasoning string and the reply goes on to its verdict
#: (SamplingParams.close_strings_at). The rubrics ask for one or two short sentences (30-60 tokens); the embedded
#: model's own verdicts mostly end under 60 tokens, but half of them (48 of 96, six prompts) ran on past 128, and
#: without a budget to max_tokens, then again in the re-ask. 64 against 128: the README's best-of-4 judged in
#: 15.3 s against 19.5 s, every verdict valid either way.
DEFAULT_REASONING_TOKENS = 64


@dataclass(frozen=True)
class JudgeInput:
    """What comes with the prompt: the conversation, the seed, and anything to check against."""

    prompt: list[Message]
    seed: int = 0
    reference: str | None = None  # a reference answer, for reference-guided rubrics
    constraints: dict[str, Any] = field(default_factory=dict)  # e.g. IFEval instruction ids and kwargs


@dataclass
class Judge(ABC):
    #: pointwise judges see one candidate per call, so the pipeline can order and track calls one by one
    pointwise: ClassVar[bool] = True
    #: judges that run a program (verifiers) get no backend
    needs_model: ClassVar[bool] = True
    #: a judge that counts identical samples (consensus) gets every candidate, duplicates included; the others
    #: get each distinct text once
    sees_duplicates: ClassVar[bool] = False

    config: JudgeConfig
    backend: Backend | None = None  # None for judges that need no model (verifiers)
    max_tokens: int = DEFAULT_JUDGE_MAX_TOKENS
    temperature: float = 0.0

    @property
    def name(self) -> str:
        return self.config.name

    @abstractmethod
    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        """Return the verdicts on these candidates; a failure is a Verdict with a status, never an exception."""


def render_question(messages: list[Message]) -> str:
    """The conversation as text, last user turn last; a single user turn is just its content."""
    if len(messages) == 1 and messages[0].role == "user":
        return messages[0].content
    return "\n\n".join(f"[{m.role}]\n{m.content}" for m in messages)
