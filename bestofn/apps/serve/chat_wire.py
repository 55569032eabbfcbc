"""The chat APIs' wire shapes, shared by `bestofn.wrap` and `bestofn serve`: requests in, responses out.

In: an OpenAI Chat Completions request (or an Anthropic Messages request) becomes our messages, generation
parameters and the per-request `bestofn` object (checked and merged in bestofn.apps.options). Parameters
best-of-n cannot honour (tools, response formats, stop sequences, logprobs, ...) are refused with a clear
error rather than silently dropped; parameters that do not change the text (user, metadata, store, ...) are
accepted and ignored.

Out: a Selection becomes a `chat.completion` (choices: the top of the ranking, then any unranked candidates in
sampling order), `chat.completion.chunk`s, an Anthropic `message` or its stream events, as plain dicts that
the SDKs' own model classes validate. `usage` counts every call the selection made (generation and judges).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

from bestofn.errors import ConfigError
from bestofn.records import Candidate, Message, Selection, as_messages

#: OpenAI request fields that do not change the answer's text: accepted, ignored
OPENAI_IGNORED = frozenset({"user", "metadata", "store", "safety_identifier", "service_tier", "prompt_cache_key",
                            "prompt_cache_retention", "prompt_cache_options", "moderation"})
OPENAI_MAPPED = frozenset({"model", "messages", "n", "max_tokens", "max_completion_tokens", "temperature", "seed",
                           "stream", "stream_options", "bestofn"})
ANTHROPIC_IGNORED = frozenset({"metadata", "service_tier", "container", "inference_geo"})
ANTHROPIC_MAPPED = frozenset({"model", "messages", "system", "max_tokens", "temperature", "stream", "bestofn"})
OPENAI_FINISH = {"stop": "stop", "length": "length", "refusal": "content_filter", "content_filter": "content_filter"}
ANTHROPIC_STOP = {"stop": "end_turn", "length": "max_tokens", "refusal": "refusal"}


def check_params(params: dict[str, Any], api: str, hint: str = "") -> None:
    """Refuse parameters best-of-n cannot honour, naming them."""
    mapped, ignored = (OPENAI_MAPPED, OPENAI_IGNORED) if api == "openai" else (ANTHROPIC_MAPPED, ANTHROPIC_IGNORED)
    bad = sorted(k for k, v in params.items() if k not in mapped and k not in ignored and v is not None)
    if bad:
        where = "OpenAI Chat Completions" if api == "openai" else "Anthropic Messages"
        raise ConfigError(f"unsupported parameter(s) for best-of-n over {where}: {', '.join(bad)} (best-of-n samples, "
                          f"judges and returns plain text answers{hint})")


def _text(content: Any, where: str) -> str:
    """Message content: a string, or a list of text parts (any other part, such as an image, is refused)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            part = part if isinstance(part, dict) else getattr(part, "model_dump", lambda: part)()
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise ConfigError(f"{where}.content[{k}]: only text parts are supported, got {kind!r}")
            texts.append(part["text"])
        return "\n".join(texts)
    raise ConfigError(f"{where}.content: expected a string or a list of text parts, got {type(content).__name__}")


def openai_messages(messages: Any) -> list[Message]:
    """OpenAI chat messages (system/developer, user, assistant; text only) -> our Messages."""
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConfigError("messages: expected a non-empty list of messages")
    out = []
    for i, m in enumerate(messages):
        m = m if isinstance(m, dict) else getattr(m, "model_dump", lambda: m)()
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise ConfigError(f"{where}: expected an object with role and content")
        role = m.get("role")
        if role == "developer":
            role = "system"
        if role not in ("system", "user", "assistant"):
            raise ConfigError(f"{where}.role: {role!r} is not supported (system, developer, user, assistant)")
        if m.get("tool_calls") or m.get("function_call") or m.get("audio"):
            raise ConfigError(f"{where}: tool calls and audio are not supported")
        out.append(Message(role=role, content=_text(m.get("content"), where)))
    return _validated(out)


def anthropic_messages(system: Any, messages: Any) -> list[Message]:
    """An Anthropic request's `system` (string or text blocks) and messages (text only) -> our Messages."""
    out = []
    if system is not None and system != "":
        out.append(Message(role="system", content=_text(system, "system")))
    if not isinstance(messages, (list, tuple)) or not messages:
        raise ConfigError("messages: expected a non-empty list of messages")
    for i, m in enumerate(messages):
        m = m if isinstance(m, dict) else getattr(m, "model_dump", lambda: m)()
        role = m.get("role") if isinstance(m, dict) else None
        if role not in ("user", "assistant"):
            raise ConfigError(f"messages[{i}].role: {role!r} is not supported (user, assistant)")
        out.append(Message(role=role, content=_text(m.get("content"), f"messages[{i}]")))
    return _validated(out)


def _validated(messages: list[Message]) -> list[Message]:
    try:
        return as_messages(messages)
    except ValueError as exc:
        raise ConfigError(f"messages: {exc}") from None


# ------------------------------------------------------------------------------------------------ out


def ordered(selection: Selection) -> list[Candidate]:
    """The answers, best first: the ranking, then unranked unique candidates in sampling order."""
    ranked = [selection.candidate(cid) for cid in selection.ranking]
    rest = [c for c in selection.candidates if c.duplicate_of is None and c.id not in set(selection.ranking)]
    return ranked + rest


def usage(selection: Selection) -> dict[str, int]:
    cost = selection.cost
    return {"prompt_tokens": cost.prompt_tokens, "completion_tokens": cost.completion_tokens,
            "total_tokens": cost.prompt_tokens + cost.completion_tokens}


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def chat_completion(selection: Selection, model: str, choices: int = 1, *, id: str | None = None,
                    created: int | None = None) -> dict[str, Any]:
    """A `chat.completion` whose choices are the top `choices` answers."""
    answers = ordered(selection)[: max(1, choices)]
    return {
        "id": id or new_id("chatcmpl-bestofn-"),
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model,
        "choices": [{"index": i, "message": {"role": "assistant", "content": c.text, "refusal": None},
                     "finish_reason": OPENAI_FINISH.get(c.finish_reason or "stop", "stop"), "logprobs": None}
                    for i, c in enumerate(answers)],
        "usage": usage(selection),
        "system_fingerprint": None,
    }


def pieces(text: str, words: int = 4) -> list[str]:
    """The text in small pieces (a few words with their whitespace) that join back to it exactly."""
    tokens = re.findall(r"\s*\S+|\s+", text)
    return ["".join(tokens[i : i + words]) for i in range(0, len(tokens), words)]


def chat_chunks(selection: Selection, model: str, choices: int = 1, *, include_usage: bool = False,
                id: str | None = None, created: int | None = None) -> Iterator[dict[str, Any]]:
    """`chat.completion.chunk`s of the top `choices` answers, one after another: a role chunk, content pieces,
    a finish chunk; with `include_usage`, a last chunk with no choices and the usage."""
    cid, stamp = id or new_id("chatcmpl-bestofn-"), created or int(time.time())

    def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": cid, "object": "chat.completion.chunk", "created": stamp, "model": model,
                "choices": [{"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    for i, c in enumerate(ordered(selection)[: max(1, choices)]):
        yield chunk(i, {"role": "assistant", "content": ""})
        for piece in pieces(c.text):
            yield chunk(i, {"content": piece})
        yield chunk(i, {}, OPENAI_FINISH.get(c.finish_reason or "stop", "stop"))
    if include_usage:
        yield {"id": cid, "object": "chat.completion.chunk", "created": stamp, "model": model, "choices": [],
               "usage": usage(selection)}


def anthropic_message(selection: Selection, model: str, *, id: str | None = None) -> dict[str, Any]:
    best = ordered(selection)[0]
    return {
        "id": id or new_id("msg_bestofn_"),
        "type": "message",
        "role": "assistant",
        "content": [{"type": "text", "text": best.text}],
        "model": model,
        "stop_reason": ANTHROPIC_STOP.get(best.finish_reason or "stop", "end_turn"),
        "stop_sequence": None,
        "usage": {"input_tokens": selection.cost.prompt_tokens, "output_tokens": selection.cost.completion_tokens},
    }


def anthropic_events(selection: Selection, model: str, *, id: str | None = None) -> Iterator[dict[str, Any]]:
    """The Messages stream events of the best answer: message_start, one text block, message_delta, stop."""
    message = anthropic_message(selection, model, id=id)
    start = {**message, "content": [], "stop_reason": None,
             "usage": {"input_tokens": message["usage"]["input_tokens"], "output_tokens": 0}}
    yield {"type": "message_start", "message": start}
    yield {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    for piece in pieces(message["content"][0]["text"]):
        yield {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
    yield {"type": "content_block_stop", "index": 0}
    yield {"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
           "usage": {"output_tokens": message["usage"]["output_tokens"]}}
    yield {"type": "message_stop"}


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event (`data` as JSON, or a raw string such as "[DONE]")."""
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {payload}\n\n".encode()
