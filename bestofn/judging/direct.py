"""Direct scores: a rubric judge with `reasoning = false` asks for its score first, with no reasoning before it.

The template says how (its `reasoning` flag: templates are data). A single rubric's reply is the bare integer
("7"); a multi-criterion rubric's (compact) is one line per criterion in the panel's order ("correctness: 7").
With `score_method = "logprob"` each score is the expected value of its distribution where it stands in the
reply: for a single rubric that is the reply's first token, so a verdict costs one prompt evaluation and one
token (a second only where the first could begin a longer score, "1" of "10"). A compact reply goes on from each
sampled score, the most likely one at the default temperature 0, so each criterion is read in turn with the
scores before it in place. A prefix token whose split the reply does not show gives its probability to the value
nearest the sampled score (logprob.py). Without logprobs (or where they cannot be read) the sampled integer is
the score, and the details say why.

The reply is short by construction: at most `TOKENS_PER_SCORE` tokens a score. One that holds no score, or one
out of range, is `invalid`; there is no re-ask (it would cost a second prompt evaluation, the thing direct
scoring saves).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jinja2
import jinja2.meta

from bestofn.backends.base import Completion, SamplingParams
from bestofn.config.templates import Template
from bestofn.errors import ConfigError
from bestofn.judging.budget import check_budget
from bestofn.judging.logprob import score_at
from bestofn.records import Message

if TYPE_CHECKING:
    from bestofn.judging.base import Judge

#: reply tokens allowed per score ("instruction_following: 10" and a newline, with room to spare)
TOKENS_PER_SCORE = 12
#: a bare score opens the reply (after punctuation or the word "score"): a number further on may be anything
_BARE = re.compile(r"^[^\w\n]*(?:score[^\w\n]*)?(-?\d+)(?![\d.]\d)", re.IGNORECASE)


@dataclass
class DirectReply:
    """One sample: each field's score (expected or sampled) and how it was read, or what is wrong."""

    completion: Completion
    scores: dict[str, float] = field(default_factory=dict)
    how: dict[str, dict[str, Any]] = field(default_factory=dict)
    problem: str | None = None


def require_flag(template: Template) -> None:
    """A template that never reads `reasoning` would still ask for reasoning first: refuse it at panel build."""
    if "reasoning" not in jinja2.meta.find_undeclared_variables(jinja2.Environment().parse(template.source)):
        raise ConfigError(f"template {template.path} has no `reasoning` flag, so it cannot ask for the score first "
                          "(reasoning = false); add an {% if reasoning is defined and not reasoning %} branch")


def parse_scores(text: str, fields: list[tuple[str, int, int]], bare: bool) -> tuple[dict[str, tuple[int, int]], str | None]:
    """{field: (integer, its character offset)} and None, or ({}, what is wrong). `bare`: one field, the integer
    the reply opens with; else each field's `name: N` line."""
    found: dict[str, tuple[int, int]] = {}
    for name, low, high in fields:
        if bare:
            match = _BARE.match(text)
        else:
            match = re.search(rf"(?im)^[^\w\n]*{re.escape(name)}[^\w\n]*[:=][^\S\n]*(-?\d+)", text)
        if match is None:
            shown = text.strip()[:60]
            return {}, f"no {'score' if bare else repr(name) + ' score'} in the reply {shown!r}"
        value = int(match.group(1))
        if not low <= value <= high:
            return {}, f"{'score' if bare else name} {value} is outside {low}-{high}"
        found[name] = (value, match.start(1))
    return found, None


async def ask_direct(
    judge: Judge, messages: list[Message], fields: list[tuple[str, int, int]], seed: int, *, bare: bool
) -> list[DirectReply]:
    """The judge's `samples` direct replies, each parsed and (score_method = "logprob") read at its scores.
    Backend errors propagate (a prompt that cannot fit: PromptTooLongError, naming the judge)."""
    assert judge.backend is not None
    logprobs = judge.config.score_method == "logprob"
    max_tokens = min(judge.max_tokens, TOKENS_PER_SCORE * len(fields))
    await check_budget(judge.backend, messages, max_tokens, judge.name)
    params = SamplingParams(n=judge.config.samples, temperature=judge.temperature, max_tokens=max_tokens, seed=seed,
                            top_logprobs=judge.config.top_logprobs if logprobs else None)
    replies = []
    for completion in await judge.backend.sample(messages, params):
        found, problem = parse_scores(completion.text, fields, bare)
        reply = DirectReply(completion, problem=problem)
        for name, low, high in fields if problem is None else ():
            value, offset = found[name]
            if logprobs:
                what = "the score" if bare else f"the {name!r} score"
                reply.scores[name], reply.how[name] = score_at(completion, offset, what, value, low, high)
            else:
                reply.scores[name] = float(value)
        replies.append(reply)
    return replies
