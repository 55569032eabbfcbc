"""`openai:MODEL`: OpenAI Chat Completions through the official SDK (`pip install 'bestofn[openai]'`).

All n samples come from one request (`n`); JSON output uses `response_format` json_schema, strict where the
schema allows; `top_logprobs` asks for logprobs; `seed` is passed through; usage is split per completion.

    OpenAIBackend("gpt-4o-mini")                                   # key from OPENAI_API_KEY
    OpenAIBackend("gpt-4o-mini", client=AsyncOpenAI(...))          # your own client (sync OpenAI works too)
    OpenAIBackend("gpt-4o-mini", concurrency=16, rpm=500, max_retries=5, timeout=60, price=(0.15, 0.6))
"""

from __future__ import annotations

from functools import partial
from typing import Any, Unpack

from bestofn.backends._openai_wire import OpenAIChat, json_schema_format, make_client, request_body
from bestofn.backends.base import Completion, SamplingParams
from bestofn.backends.limits import RemoteBackend, RemoteSettings
from bestofn.errors import BackendError, ConfigError
from bestofn.records import Message


class OpenAIBackend(RemoteBackend):
    prefix = "openai"

    def __init__(self, model: str, *, client: Any = None, api_key: str | None = None,
                 **settings: Unpack[RemoteSettings]) -> None:
        if not model:
            raise ConfigError("the openai backend needs a model name: openai:MODEL, e.g. openai:gpt-4o-mini")
        super().__init__(model, **settings)
        if client is None:
            client = partial(make_client, self.spec, base_url=self.base_url, api_key=api_key,
                             max_retries=self.max_retries, timeout=self.timeout)
        self.chat = OpenAIChat(self.spec, model, client, self.limits)

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        fmt = json_schema_format(params.json_schema) if params.json_schema is not None else None
        body = request_body(self.model, messages, params, n=params.n, seed=params.seed, response_format=fmt)
        completions = await self.chat.create(body)
        if len(completions) != params.n:
            raise BackendError(self.spec, f"asked for n={params.n} choices, got {len(completions)}")
        return completions

    async def aclose(self) -> None:
        await self.chat.aclose()
