"""Untrusted candidate text goes between delimiters no candidate can know in advance.

The tag is a hash of (seed, candidate text, judge): a candidate would have to contain its own hash to forge
its closing delimiter, yet a rerun builds the same prompt and hits the cache. Look-alikes of our delimiter
inside the text are neutralised in the prompt only; the stored candidate text is never changed.
"""

from __future__ import annotations

import re

from bestofn.records import sha256_hex

_LOOKALIKE = re.compile(r"<\s*(/?)\s*(answer|candidate|response)", re.IGNORECASE)


def neutralise(text: str) -> str:
    return _LOOKALIKE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)


def delimit(text: str, *, seed: int, judge: str, label: str = "answer") -> str:
    tag = sha256_hex("delimiter", seed, text, judge)[:12]
    return f"<{label}-{tag}>\n{neutralise(text)}\n</{label}-{tag}>"
