"""A cheap, deterministic check for content-free candidates: no model, the same answer every time.

LLM judges can be fooled by answers with nothing in them: a lone ":", an opener such as "Thought process:" or
"Let's solve this problem step by step." (the "master key" attacks, Zhao et al. 2025, "One Token to Fool
LLM-as-a-Judge"), or a list that repeats one line to look thorough. `content_flag(text)` names the problem, or
returns None for a candidate with content:

- `empty`: nothing but whitespace;
- `no-content`: not one letter or digit (":", "...", "**", control or bidi characters only);
- `opener-only`: only a known reasoning opener, with nothing after it (OPENERS, compared case- and
  punctuation-blind);
- `repetitive`: at least MIN_WORDS words of which under MIN_DISTINCT of the 4-word sequences are distinct
  (numbers ignored, so "1. x 2. x 3. x" repeats).

A single real word or number ("Paris", "42") has content: short answers to short questions are not flagged.

The pipeline records flags in `Selection.stats["content_free"]` (candidate id -> flag: detail) and the panel's
`content_free` setting decides what they do (bestofn.ranking.aggregate): "flag" (recorded only), "demote" (the
default: ranked below every candidate with content, so never best while one exists) or "veto" (unrankable).
"""

from __future__ import annotations

import re
import unicodedata

#: reasoning openers that are not answers (lower case, punctuation dropped, single spaces)
OPENERS = frozenset({
    "thought process", "thoughts", "let s solve this problem step by step", "let s think step by step",
    "let s think about this step by step", "let me think", "let me think step by step", "step by step",
    "solution", "the solution", "solution is", "answer", "the answer", "the answer is", "final answer",
    "here is the answer", "here s the answer", "here is my answer", "reasoning", "explanation", "analysis",
    "step 1", "response", "output",
})  # not "sure", "ok", "yes": those can be whole answers
MIN_WORDS = 30
MIN_DISTINCT = 0.3

_WORD = re.compile(r"[^\W\d_]+")  # letters only: numbering does not make a list less repetitive


def _normal(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"[^\W_]+", text))


def content_flag(text: str) -> str | None:
    """None for a candidate with content, else "flag: detail" (see the module docstring)."""
    stripped = text.strip()
    if not stripped:
        return "empty: the answer is blank"
    if not any(ch.isalnum() for ch in stripped):
        return f"no-content: no letter or digit in {stripped[:40]!r}"
    if _normal(stripped) in OPENERS:
        return f"opener-only: {stripped[:60]!r} is an opener with no answer after it"
    words = _WORD.findall(unicodedata.normalize("NFKC", text).casefold())
    if len(words) >= MIN_WORDS:
        grams = [tuple(words[i : i + 4]) for i in range(len(words) - 3)]
        distinct = len(set(grams)) / len(grams)
        if distinct < MIN_DISTINCT:
            return f"repetitive: {distinct:.0%} of its {len(grams)} four-word sequences are distinct"
    return None


def content_flags(texts: dict[str, str]) -> dict[str, str]:
    """Candidate id -> flag, for the flagged ones only."""
    flags = {cid: content_flag(text) for cid, text in texts.items()}
    return {cid: flag for cid, flag in flags.items() if flag is not None}
