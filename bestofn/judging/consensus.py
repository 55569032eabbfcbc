"""Consensus judge (kind "consensus", self-consistency): samples that reach the same final answer vouch for each
other. No model.

    [[judge]]
    name = "consensus"
    kind = "consensus"
    answer_regex = 'answer: (\\S+)'   # optional: the answer is this regex's last match (its first group, if it
                                      # has one); default: the numeric verifier's final-answer extractor

The final answer is, by default, what the exact-numeric verifier extracts (verifiers/numeric.py: `#### 72`,
`\\boxed{72}`, `Answer: 72`, "the answer is 72", else the last number), compared as exact rationals (`18.00`
equals `18`); with `answer_regex`, the matched text, stripped and compared case-insensitively. A candidate's
score is the share of the OTHER samples whose answer equals its own, 0 to 1. The judge sees every sample,
duplicates included, so identical texts vote once each; it gives one verdict per distinct text. A candidate with
no extractable answer abstains, and so does a prompt's only sample (there is no other to agree with). The
details hold the answer, how it was found, how many other samples agree out of how many, and the copies.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

from bestofn.judging.base import Judge, JudgeInput
from bestofn.judging.verifiers.numeric import extract_answer, show
from bestofn.records import Candidate, Verdict


@dataclass
class ConsensusJudge(Judge):
    pointwise: ClassVar[bool] = False  # a candidate's score depends on the others
    needs_model: ClassVar[bool] = False
    sees_duplicates: ClassVar[bool] = True

    def __post_init__(self) -> None:
        self.pattern = re.compile(self.config.answer_regex) if self.config.answer_regex else None

    def answer(self, text: str) -> tuple[Any, str, str] | None:
        """(what is compared, what is shown, how it was found), or None when the text holds no final answer."""
        if self.pattern is None:
            found = extract_answer(text)
            return None if found is None else (found[0], show(found[0]), found[1])
        matches = list(self.pattern.finditer(text))
        if not matches:
            return None
        shown = ((matches[-1].group(1) if self.pattern.groups else matches[-1].group(0)) or "").strip()
        return (shown.casefold(), shown, "answer_regex") if shown else None

    async def judge(self, item: JudgeInput, candidates: list[Candidate]) -> list[Verdict]:
        started = time.perf_counter()
        answers = [self.answer(c.text) for c in candidates]
        votes = Counter(a[0] for a in answers if a is not None)
        copies = Counter(c.id for c in candidates)
        others = len(candidates) - 1
        verdicts: dict[str, Verdict] = {}
        for candidate, answer in zip(candidates, answers):
            if candidate.id in verdicts:
                continue
            common: dict[str, Any] = dict(judge=self.name, kind="consensus", candidate_ids=[candidate.id])
            if answer is None:
                what = f"answer_regex {self.pattern.pattern!r} matched nothing" if self.pattern else "no number found"
                verdicts[candidate.id] = Verdict(**common, status="abstain", reason=f"no final answer: {what}")
                continue
            key, shown, how = answer
            details = {"answer": shown, "found_by": how, "copies": copies[candidate.id]}
            if others == 0:
                verdicts[candidate.id] = Verdict(**common, status="abstain", details=details,
                                                 reason="the prompt's only sample: no other to agree with")
                continue
            agree = votes[key] - 1
            score = agree / others
            verdicts[candidate.id] = Verdict(
                **common, status="ok", score=round(score, 6), normalized=round(score, 6),
                reasoning=f"{agree} of the {others} other samples answer {shown}",
                details={**details, "agree": agree, "others": others},
                latency_s=round(time.perf_counter() - started, 6),
            )
        return list(verdicts.values())
