"""Ask a judge model for a structured reply: the JSON schema comes from a pydantic model, the reply is validated
strictly on our side (ranges included), an optional semantic check runs on the parsed object (for example
"every candidate id exactly once"), and a bad reply gets one re-ask that says what was wrong and shows the
schema (the template `_reask.v2`). What is still wrong after it is the caller's `invalid` with that reason.

The one loop every structured judge call goes through: the rubric, compact, pairwise and listwise judges and the
LLM rerankers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable

from pydantic import BaseModel

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.judging.base import DEFAULT_REASONING_TOKENS
from bestofn.judging.budget import check_budget
from bestofn.judging.structured import json_schema, parse_reply
from bestofn.records import Message, Usage
from bestofn.config.templates import load_template

if TYPE_CHECKING:
    from bestofn.judging.base import Judge

REASK_TEMPLATE = "_reask.v2"

#: a semantic check on a parsed reply: None when it is fine, else what is wrong (one line)
Check = Callable[[BaseModel], "str | None"]


@dataclass
class Reply:
    """One sample's outcome. `obj` is the last parsed object (None if no attempt parsed); `problem` is what is
    still wrong with it after the re-ask (None when it is fine). `completion` is the reply `obj` came from."""

    obj: BaseModel | None = None
    completion: Completion | None = None
    problem: str | None = None
    usage: Usage = field(default_factory=Usage)
    attempts: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.obj is not None and self.problem is None

    @property
    def raw(self) -> str | None:
        return self.completion.text if self.completion else None


def reasons(replies: Iterable[Reply]) -> str:
    """Every distinct problem the replies met, in order, as one line (the reason of an `invalid` verdict)."""
    return "; ".join(dict.fromkeys(p for r in replies for p in r.problems))


def _judge(completion: Completion, model: type[BaseModel], check: Check | None) -> tuple[BaseModel | None, str | None]:
    obj, why = parse_reply(completion.text, completion.finish_reason, model)
    if obj is not None and check is not None:
        why = check(obj)
    return obj, why


async def ask_structured(
    backend: Backend,
    messages: list[Message],
    model: type[BaseModel],
    *,
    max_tokens: int,
    temperature: float,
    seed: int,
    n: int = 1,
    top_logprobs: int | None = None,
    check: Check | None = None,
    judge: str = "judge",
    reasoning_tokens: int | None = None,
) -> list[Reply]:
    """n samples, each validated; a sample that fails gets one re-ask. Backend errors propagate, a prompt that
    cannot fit included (PromptTooLongError, naming `judge`). `reasoning_tokens`: the budget of the reply's
    string (SamplingParams.close_strings_at), for a schema whose strings come before the verdict."""
    schema = json_schema(model)
    params = SamplingParams(
        n=n, temperature=temperature, max_tokens=max_tokens, seed=seed, json_schema=schema, top_logprobs=top_logprobs,
        close_strings_at=reasoning_tokens,
    )
    out = []
    await check_budget(backend, messages, max_tokens, judge)  # too long: PromptTooLongError, nothing cut
    for completion in await backend.sample(messages, params):
        reply = Reply(completion=completion, usage=completion.usage, attempts=1)
        reply.obj, reply.problem = _judge(completion, model, check)
        if reply.problem is not None:
            reply.problems.append(reply.problem)
            reask = load_template(REASK_TEMPLATE).render(
                error=reply.problem, schema=json.dumps(schema, separators=(",", ":"))
            )
            retry = [*messages, Message(role="assistant", content=completion.text), *reask]
            await check_budget(backend, retry, max_tokens, judge)
            (again,) = await backend.sample(retry, params.model_copy(update={"n": 1, "seed": seed + 1}))
            reply.usage += again.usage
            reply.attempts += 1
            obj, problem = _judge(again, model, check)
            if obj is not None or reply.obj is None:  # keep the better of the two: a parsed object over none
                reply.obj, reply.problem, reply.completion = obj, problem, again
            if problem is not None:
                reply.problems.append(problem)
        out.append(reply)
    return out


async def ask_samples(judge: Judge, messages: list[Message], model: type[BaseModel], seed: int) -> list[Reply]:
    """A pointwise judge's call (rubric, compact): its `samples` replies at its own limits, with top logprobs
    when it scores by them."""
    logprobs = judge.config.score_method == "logprob"
    return await ask_structured(
        judge.backend, messages, model, max_tokens=judge.max_tokens,  # type: ignore[arg-type]
        temperature=judge.temperature, seed=seed, n=judge.config.samples,
        top_logprobs=judge.config.top_logprobs if logprobs else None, judge=judge.name,
        reasoning_tokens=judge.config.reasoning_tokens or DEFAULT_REASONING_TOKENS,
    )
