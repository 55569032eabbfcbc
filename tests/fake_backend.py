"""A deterministic queue of replies, for unit tests of parsing and aggregation only.

Nothing outside tests/ knows it. Each sampled completion takes the next reply from the queue; a reply is a
string, or a (text, finish_reason) tuple. Every request is recorded for assertions.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.records import Message, Usage


class FakeBackend(Backend):
    def __init__(self, replies: Iterable[str | tuple[str, str]] = (), spec: str = "fake"):
        self.spec = spec
        self.replies: deque = deque(replies)
        self.requests: list[tuple[list[Message], SamplingParams]] = []

    def push(self, *replies: str | tuple[str, str]) -> None:
        self.replies.extend(replies)

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        self.requests.append((messages, params))
        out = []
        for _ in range(params.n):
            if not self.replies:
                raise AssertionError("FakeBackend ran out of replies")
            reply = self.replies.popleft()
            text, finish = reply if isinstance(reply, tuple) else (reply, "stop")
            out.append(Completion(text=text, finish_reason=finish, usage=Usage(prompt_tokens=10, completion_tokens=5)))
        return out
