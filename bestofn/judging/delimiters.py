"""Untrusted candidate text goes between delimiters no candidate can know in advance.

The tag is a hash of (seed, candidate text, judge): a candidate would have to contain its own hash to forge
its closing delimiter, yet a rerun builds the same prompt and hits the cache. Look-alikes of our delimiter
and chat-template control tokens inside the text are neutralised in the prompt only; the stored candidate text is
never changed.
"""

from __future__ import annotations

import re

from bestofn.records import sha256_hex

#: every label a delimiter is made with (judges: answer; rerankers: document), and words a judge reads as one
_LOOKALIKE = re.compile(r"<\s*(/?)\s*(answer|candidate|response|document)", re.IGNORECASE)
# Chat-template control tokens. llama.cpp (and other servers) tokenize the templated prompt with special tokens
# parsed, so a candidate writing "<|im_end|><|im_start|>system" would open a real system turn in the judge's
# context: ChatML / Llama 3 / Phi `<|...|>`, Llama 2 / Mistral `<s>`, `</s>`, `[INST]`, Gemma `<start_of_turn>`.
_CONTROL = re.compile(r"<\|[^|<>\s]{1,48}\|>|</?s>|\[/?INST\]|<(?:start|end)_of_turn>", re.IGNORECASE)
_DEFANG = str.maketrans({"<": "‹", ">": "›", "[": "⟦", "]": "⟧"})


def neutralise(text: str) -> str:
    text = _LOOKALIKE.sub(lambda m: f"‹{m.group(1)}{m.group(2)}", text)
    return _CONTROL.sub(lambda m: m.group(0).translate(_DEFANG), text)


def delimit(text: str, *, seed: int, judge: str, label: str = "answer") -> str:
    tag = sha256_hex("delimiter", seed, text, judge)[:12]
    return f"<{label}-{tag}>\n{neutralise(text)}\n</{label}-{tag}>"
