"""The records that flow through bestofn: frozen pydantic models, JSON in and out.

messages -> Candidate -> Verdict -> Selection (ranking, best, pairs) -> PreferencePair
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

Role = Literal["system", "user", "assistant"]
VerdictKind = Literal["rubric", "pairwise", "listwise", "verifier", "consensus", "scorer"]
VerdictStatus = Literal["ok", "invalid", "error", "abstain"]


class Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Message(Record):
    role: Role
    content: str


class Usage(Record):
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
        )


def sha256_hex(*parts: Any) -> str:
    """A stable hash of JSON-serialisable parts (used for ids and delimiters)."""
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()


def text_id(text: str) -> str:
    """A candidate's id: the content hash of its text, so identical texts share an id."""
    return sha256_hex("candidate", text)[:16]


def messages_id(messages: list[Message]) -> str:
    return sha256_hex("prompt", [m.model_dump() for m in messages])[:16]


class Candidate(Record):
    id: str
    index: int
    text: str
    finish_reason: str | None = None
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    duplicate_of: int | None = None  # index of the first candidate with the same text


class Verdict(Record):
    judge: str
    kind: VerdictKind
    candidate_ids: list[str]
    status: VerdictStatus
    score: float | None = None  # raw, on the rubric's scale
    normalized: float | None = None  # 0 to 1
    criteria: dict[str, float] | None = None
    reasoning: str | None = None
    raw: str | None = None
    reason: str | None = None  # why not ok
    template_sha256: str | None = None
    model: str | None = None
    usage: Usage = Field(default_factory=Usage)
    latency_s: float = 0.0
    attempts: int = 1
    details: dict[str, Any] = Field(default_factory=dict)  # kind-specific extras (e.g. per-order results)


class PreferencePair(Record):
    id: str
    prompt: list[Message]
    chosen: list[Message]
    rejected: list[Message]
    score_chosen: float
    score_rejected: float
    margin: float
    strategy: str
    judges: list[str]
    template_sha256: dict[str, str]
    generator: str
    panel: str
    seed: int
    chosen_id: str
    rejected_id: str


class Spend(Record):
    """What some model calls came to: the one record of calls, cache hits, tokens and money. A Selection's
    cost, a build's, an A/B item's and a rerank stage's are Spends with their own extra fields (seconds)."""

    calls: int = 0  # made to a model (a cache hit is not a call)
    cache_hits: int = 0  # answered from the call cache: no tokens, no money
    prompt_tokens: int = 0
    completion_tokens: int = 0
    usd: float | None = None  # over the priced calls (None while none is); `unpriced_calls` counts the rest
    unpriced_calls: int = 0

    @classmethod
    def call(cls, usage: Usage, usd: float | None) -> Spend:
        """One call to a model: its tokens, and its price (None: no price is known, so it counts as unpriced)."""
        return cls(calls=1, prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                   usd=usd, unpriced_calls=int(usd is None))

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Spend) -> Spend:
        """The counts of both (a subclass's own fields, such as seconds, are not summed: a Spend comes out).
        Money adds over the priced calls; the sum is kept to 12 decimals, so adding six-decimal costs gives
        six-decimal costs, and a cheap model's fraction of a microdollar a call still counts."""
        usd = None if self.usd is None and other.usd is None else round((self.usd or 0.0) + (other.usd or 0.0), 12)
        return Spend(
            calls=self.calls + other.calls,
            cache_hits=self.cache_hits + other.cache_hits,
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            usd=usd,
            unpriced_calls=self.unpriced_calls + other.unpriced_calls,
        )


class Cost(Spend):
    """A Selection's cost: its calls' Spend, the money to six decimals (the JSON's precision), and its seconds."""

    seconds: float = 0.0
    generation_seconds: float = 0.0
    judging_seconds: float = 0.0

    @field_validator("usd")
    @classmethod
    def _six_decimals(cls, usd: float | None) -> float | None:
        return None if usd is None else round(usd, 6)


class Selection(Record):
    prompt: list[Message]
    panel: str
    candidates: list[Candidate]
    verdicts: list[Verdict]
    scores: dict[str, float | None]
    ranking: list[str]
    best: Candidate | None
    pairs: list[PreferencePair]
    cost: Cost
    stats: dict[str, Any] = Field(default_factory=dict)

    def candidate(self, candidate_id: str) -> Candidate:
        return next(c for c in self.candidates if c.id == candidate_id)

    def verdicts_for(self, candidate_id: str) -> list[Verdict]:
        return [v for v in self.verdicts if candidate_id in v.candidate_ids]

    def unsafe_ids(self) -> set[str]:
        """The candidates the safety judge vetoed or could not check (the aggregate's `unsafe`, as its stats
        carry it in the Selection's JSON): never the chosen side of a pair."""
        return {*self.stats.get("vetoed", ()), *self.stats.get("safety_flagged", ())}


def as_messages(prompt: str | list[Message] | list[dict[str, Any]]) -> list[Message]:
    """Accept a plain string, dicts or Messages; always return a non-empty list of Messages."""
    if isinstance(prompt, str):
        messages = [Message(role="user", content=prompt)]
    else:
        messages = [m if isinstance(m, Message) else Message.model_validate(m) for m in prompt]
    if not messages:
        raise ValueError("the prompt has no messages")
    if not any(m.role == "user" and m.content.strip() for m in messages):
        raise ValueError("the prompt has no non-empty user message")
    for i, m in enumerate(messages):  # half a surrogate pair is not text: no UTF-8 encoder or JSON sink takes it
        if bad := _LONE_SURROGATE.search(m.content):
            raise ValueError(f"message {i} ({m.role}): a lone surrogate U+{ord(bad.group()):04X} at character "
                             f"{bad.start()} is not valid Unicode text; fix or re-encode the input")
    return messages


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
