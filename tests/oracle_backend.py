"""A scripted judge model for UNIT tests of the pairwise, listwise and compact judging logic (never a stand-in
for a real model's quality): it finds the known candidate texts in the judge prompt, in the order shown, and
answers the JSON schema it was sent from a hidden quality per text. It counts every call.

- bias="first": position bias, the way a small model fails: pairwise always "A", listwise the shown order.
- broken=k: the first k listwise replies repeat the first label (grammar-valid, not a permutation).
- invalid=k: the first k replies of any kind are cut at max_tokens.
"""

from __future__ import annotations

import json

from bestofn.backends.base import Backend, Completion, SamplingParams
from bestofn.records import Message, Usage


class OracleBackend(Backend):
    def __init__(self, quality: dict[str, float], *, bias: str | None = None, broken: int = 0, invalid: int = 0,
                 spec: str = "oracle"):
        self.quality, self.bias, self.broken, self.invalid = quality, bias, broken, invalid
        self.spec = spec
        self.requests: list[tuple[list[Message], SamplingParams]] = []

    @property
    def calls(self) -> int:
        return sum(p.n for _, p in self.requests)

    def shown(self, messages: list[Message]) -> list[str]:
        prompt = next(m.content for m in messages if m.role == "user")  # the original prompt, even in a re-ask
        found = [(prompt.find(text), text) for text in self.quality if text in prompt]
        return [text for _, text in sorted(found)]

    def reply(self, messages: list[Message], schema: dict) -> str:
        props = schema["properties"]
        shown = self.shown(messages)
        if "winner" in props:
            a, b = shown
            if self.bias == "first":
                winner = "A"
            else:
                qa, qb = self.quality[a], self.quality[b]
                winner = "A" if qa > qb else "B" if qa < qb else "tie"
            return json.dumps({"reasoning": "compared", "winner": winner})
        if "ranking" in props:
            window_labels = props["ranking"]["items"]["enum"]
            if self.broken > 0:
                self.broken -= 1
                return json.dumps({"ranking": [window_labels[0]] * len(window_labels)})
            order = list(range(len(shown)))
            if self.bias != "first":
                order.sort(key=lambda i: -self.quality[shown[i]])
            return json.dumps({"ranking": [window_labels[i] for i in order]})
        (text,) = shown
        out: dict = {"reasoning": "graded"}
        for name, spec in props.items():
            if name != "reasoning":
                out[name] = int(round(min(spec.get("maximum", 10), max(spec.get("minimum", 0), self.quality[text]))))
        return json.dumps(out)

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        self.requests.append((messages, params))
        out = []
        for _ in range(params.n):
            if self.invalid > 0:
                self.invalid -= 1
                out.append(Completion(text='{"reasoning": "and so on and', finish_reason="length",
                                      usage=Usage(prompt_tokens=10, completion_tokens=5)))
                continue
            assert params.json_schema is not None, "judges always send a schema"
            out.append(Completion(text=self.reply(messages, params.json_schema), finish_reason="stop",
                                  usage=Usage(prompt_tokens=10, completion_tokens=5)))
        return out
