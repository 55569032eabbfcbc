"""A token budget checked before every judge call: a prompt that cannot fit is refused, never cut.

A 100,000-character candidate (or question) would overflow a small judge's context, and the backend would fail
or, worse, a server would silently drop the start of the prompt. So before a judge calls its model, the rendered
messages are measured against

    budget = the backend's context window - the judge's max_tokens        (backends that know their window)
    budget = BESTOFN_JUDGE_MAX_INPUT_TOKENS, default 32,000               (backends that do not say)

(with both known, the smaller). A prompt over budget raises `PromptTooLongError`, a BackendError, so the judge
returns an `error` Verdict whose reason gives the sizes; the stored candidate text is never shortened.

Measuring: the UTF-8 byte count bounds a byte-level tokenizer's count from above, so a prompt whose bytes fit
needs no tokenizer. Otherwise the backend's `count_tokens(text)` counts where it has a tokenizer (the local
model); for any other backend the count is estimated at one token per 3 bytes (English runs at about 4
characters a token, so this overestimates: it errs towards refusing). Each message adds `PER_MESSAGE` tokens of
chat-template overhead.
"""

from __future__ import annotations

import math

from bestofn.backends.base import Backend
from bestofn.backends.limits import env_int
from bestofn.errors import BackendError
from bestofn.records import Message

DEFAULT_MAX_INPUT_TOKENS = 32_000
BYTES_PER_TOKEN = 3  # the conservative estimate for backends without a tokenizer
PER_MESSAGE = 8  # chat-template tokens around each message


class PromptTooLongError(BackendError):
    """A judge prompt that does not fit the judge's budget (nothing was sent, nothing was cut)."""


def budget_for(backend: Backend, max_tokens: int) -> tuple[int, str]:
    """(prompt tokens allowed, how that figure came about)."""
    window = backend.context_window
    cap = env_int("BESTOFN_JUDGE_MAX_INPUT_TOKENS", None)
    if window:
        budget, how = window - max_tokens, f"context {window} - max_tokens {max_tokens}"
        if cap is not None and cap < budget:
            budget, how = cap, "BESTOFN_JUDGE_MAX_INPUT_TOKENS"
        return budget, how
    if cap is not None:
        return cap, "BESTOFN_JUDGE_MAX_INPUT_TOKENS"
    return DEFAULT_MAX_INPUT_TOKENS, "the default judge input budget (BESTOFN_JUDGE_MAX_INPUT_TOKENS)"


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


async def prompt_tokens(backend: Backend, messages: list[Message], budget: int) -> tuple[int, str]:
    """(tokens, how counted): an upper bound when it already fits, else the tokenizer's count or the estimate."""
    overhead = PER_MESSAGE * len(messages)
    size = sum(_bytes(m.content) for m in messages) + overhead
    if size <= budget:
        return size, "bytes (an upper bound)"
    counted = 0
    for m in messages:
        tokens = await backend.count_tokens(m.content)
        if tokens is None:  # no tokenizer
            break
        counted += tokens
    else:
        return counted + overhead, "the model's tokenizer"
    estimate = sum(math.ceil(_bytes(m.content) / BYTES_PER_TOKEN) for m in messages) + overhead
    return estimate, f"estimated at {BYTES_PER_TOKEN} bytes a token"


async def check_budget(backend: Backend, messages: list[Message], max_tokens: int, judge: str = "judge") -> None:
    """Raise PromptTooLongError when the judge prompt cannot fit; return quietly when it can."""
    budget, how = budget_for(backend, max_tokens)
    tokens, counted = await prompt_tokens(backend, messages, budget)
    if tokens > budget:
        chars = sum(len(m.content) for m in messages)
        raise PromptTooLongError(
            backend.spec,
            f"{judge}: the judge prompt is {tokens:,} tokens ({counted}; {chars:,} characters), over its budget of "
            f"{budget:,} ({how}); nothing was sent and no text was cut: use a judge model with a longer context",
        )


def failure_status(exc: BackendError) -> str:
    """The Verdict status for a judge call that raised: `invalid` for a prompt that can never fit this judge (a
    rerun would fail the same way; a build keeps the prompt with that candidate unrankable), else `error` (the
    backend failed: worth retrying)."""
    return "invalid" if isinstance(exc, PromptTooLongError) else "error"
