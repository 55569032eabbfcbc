"""The batched local engine (bestofn.backends.local_batch) on the real SmolLM2: the n samples of a call and the
judge calls of a prompt decode in shared `llama_decode` batches, give the sequential path's texts for the same
seeds, keep grammar-constrained replies schema-valid and report max_tokens as finish_reason "length".

Every batch that reaches llama.cpp is seen by a wrapper around the real `llama_decode` (it counts the distinct
sequences in it), so a batched call that silently went one sequence at a time fails."""

from __future__ import annotations

import asyncio
import json

import jsonschema
import pytest

from bestofn.backends import cpu, local, local_batch
from bestofn.backends.base import SamplingParams
from bestofn.errors import ConfigError
from bestofn.records import Message

ASK = [Message(role="user", content="Name a colour and say why you like it.")]
SCHEMA = {"type": "object", "properties": {"score": {"type": "integer", "enum": list(range(1, 11))}},
          "required": ["score"], "additionalProperties": False}
RUBRIC = "You grade answers. Rate from 1 to 10 how true the statement is. Reply with JSON: {\"score\": N}."
STATEMENTS = ["The sky is blue.", "Fish can fly to the moon.", "Water boils at 100 C at sea level.",
              "Two plus two is five."]


class Batches(list):
    """The sequence ids of every batch given to llama.cpp's llama_decode, the prefix copies between sequences
    (llama_memory_seq_cp) and the sizes of the candidate arrays samplers were applied to (llama_sampler_apply)."""

    copies: list[tuple[int, int]]
    applied: list[int]
    order: list[list[int]]  # each batch's sequence ids, in batch order

    def widest(self) -> int:
        return max(map(len, self))


@pytest.fixture
def batches(monkeypatch):
    import llama_cpp.llama_cpp as c

    seen = Batches()
    seen.copies, seen.applied, seen.order = [], [], []
    real_decode, real_copy, real_apply = c.llama_decode, c.llama_memory_seq_cp, c.llama_sampler_apply

    def decode(ctx, batch):  # the real llama_decode, after noting which sequences the batch holds
        seen.append({batch.seq_id[i][0] for i in range(batch.n_tokens)})
        seen.order.append([batch.seq_id[i][0] for i in range(batch.n_tokens)])
        return real_decode(ctx, batch)

    def seq_cp(mem, src, dst, p0, p1):
        seen.copies.append((src, dst))
        return real_copy(mem, src, dst, p0, p1)

    def apply(sampler, candidates):
        seen.applied.append(candidates._obj.size)
        return real_apply(sampler, candidates)

    monkeypatch.setattr(c, "llama_decode", decode)
    monkeypatch.setattr(c, "llama_memory_seq_cp", seq_cp)
    monkeypatch.setattr(c, "llama_sampler_apply", apply)
    monkeypatch.delenv(local_batch.ENV, raising=False)
    return seen


def backend(engine: str) -> local.LocalBackend:
    b = local.LocalBackend()
    assert b.engine == "batched"  # the default
    b.engine = engine
    return b


def judge_calls(b: local.LocalBackend, temperature: float):
    """Four judge-like calls sharing the rubric (the first one with two samples), submitted at once as the
    pipeline's judge_all submits them."""
    async def go():
        return await asyncio.gather(*(
            b.sample([Message(role="system", content=RUBRIC), Message(role="user", content=s)],
                     SamplingParams(n=2 if i == 0 else 1, temperature=temperature, max_tokens=16, seed=7,
                                    json_schema=SCHEMA))
            for i, s in enumerate(STATEMENTS)))
    return [c for out in asyncio.run(go()) for c in out]


@pytest.mark.parametrize("weights", ["original", "bf16", "q8_0"])
def test_n_samples_decode_together_distinct_per_seed_and_as_the_sequential_path(batches, monkeypatch, weights):
    """Same seeds, same texts as the sequential path with the shipped Q4_1 weights, whose kernels are the same
    for one token and for several. With 16-bit weights llama.cpp computes a lone token with other kernels than a
    batch, whose sums round apart: both paths stay deterministic for a seed, and a lone sequence (decoded with
    the token before it, as the sequential path decodes every step) gives the sequential path's text; several
    sequences decoded together give their own (the README says so)."""
    monkeypatch.setenv(cpu.WEIGHTS_ENV, weights)
    params = SamplingParams(n=4, temperature=0.9, max_tokens=10, seed=3)
    first = asyncio.run(backend("batched").sample(ASK, params))
    assert backend("batched").weights == weights
    assert batches.widest() == 4  # the four samples shared decode batches
    assert len(first) == 4 and all(c.text and c.finish_reason in ("stop", "length") for c in first)
    assert all(0 < c.usage.completion_tokens <= 10 and c.usage.prompt_tokens > 0 for c in first)
    assert len({c.text for c in first}) == 4  # a seed per sample
    again = asyncio.run(backend("batched").sample(ASK, params))
    assert [c.text for c in again] == [c.text for c in first]  # deterministic for a fixed seed
    batches.clear()
    sequential = asyncio.run(backend("sequential").sample(ASK, params))
    assert batches and batches.widest() == 1
    # again, now that the prompt's prefix is in the sequential path's cache (its last token evaluated anew)
    assert [c.text for c in asyncio.run(backend("sequential").sample(ASK, params))] == [c.text for c in sequential]
    if weights == "original":
        assert [c.text for c in sequential] == [c.text for c in first]  # same seeds, same texts
    else:
        one = params.model_copy(update={"n": 1})
        assert [c.text for c in asyncio.run(backend("batched").sample(ASK, one))] == [sequential[0].text]


@pytest.mark.parametrize("temperature", [0.0, 0.8])  # greedy: the grammar checks one token; sampled: the chain's
def test_judge_calls_share_their_prefix_and_every_reply_fits_the_schema(batches, temperature):
    replies = judge_calls(backend("batched"), temperature)
    assert batches.widest() == len(STATEMENTS) + 1  # the separate calls decoded together
    assert batches.copies  # the shared rubric prefix was evaluated once and copied
    for reply in replies:
        assert reply.finish_reason == "stop"
        jsonschema.validate(json.loads(reply.text), SCHEMA)
    if temperature == 0.0:  # the grammar saw one token per step, the whole vocabulary only where it refused it
        tokens = sum(r.usage.completion_tokens + 1 for r in replies)
        assert batches.applied.count(1) == tokens and sum(n > 1 for n in batches.applied) < tokens / 2
        assert [r.text for r in judge_calls(backend("sequential"), 0.0)] == [r.text for r in replies]


def test_sequences_that_end_leave_no_gap_and_the_others_keep_their_cache(batches, monkeypatch):
    """Calls ending at different lengths, decoded together: after one ends, the live sequences move down to
    streams 0..k-1 and decode in stream order (llama.cpp splits a batch with gaps or out of order into slower,
    smaller steps). On the Q4_1 weights, whose kernels give the same numbers for any batch, the texts are the
    sequential path's: each sequence's KV cache moved with it."""
    monkeypatch.setenv(cpu.WEIGHTS_ENV, "original")
    lengths = [12, 2, 8, 1, 12]

    async def go(engine: str):
        b = backend(engine)
        return await asyncio.gather(*(b.sample(ASK, SamplingParams(n=1, temperature=0.9, max_tokens=m, seed=i))
                                      for i, m in enumerate(lengths)))

    together = [c for out in asyncio.run(go("batched")) for c in out]
    steps = [ids for ids in batches.order if len(set(ids)) == len(ids)]  # a token per live sequence
    assert [len(ids) for ids in steps] == sorted((len(ids) for ids in steps), reverse=True)
    assert len(steps[0]) == 4 and len(steps[-1]) == 2  # the 1-token call ended at its first token
    assert all(ids == list(range(len(ids))) for ids in steps), steps
    assert [c.usage.completion_tokens for c in together] == lengths
    sequential = [c for out in asyncio.run(go("sequential")) for c in out]
    assert [c.text for c in together] == [c.text for c in sequential]


def test_on_16_bit_weights_only_a_round_of_one_sequence_decodes_its_lone_steps_with_the_token_before(
        batches, monkeypatch):
    """A lone token takes llama.cpp's dot-product kernels on 16-bit weights: a call of one sequence re-decodes the
    token before it with it (the sequential path's numbers), while the last live sequence of a round of several
    (whose text depends on its batches anyway) decodes its steps alone, at half the work."""
    monkeypatch.setenv(cpu.WEIGHTS_ENV, "bf16")

    async def go(lengths: list[int]):
        b = backend("batched")
        return await asyncio.gather(*(b.sample(ASK, SamplingParams(n=1, temperature=0.9, max_tokens=m, seed=i))
                                      for i, m in enumerate(lengths)))

    asyncio.run(go([2, 9]))
    steps = [ids for ids in batches.order if len(ids) <= 2]  # the decode steps (the prompt is one long batch)
    assert steps.count([0, 1]) >= 1 and steps.count([0]) >= 6, steps  # the longer call ran on alone, one token
    assert [0, 0] not in steps
    batches.order.clear()
    ((alone,),) = asyncio.run(go([6]))
    steps = [ids for ids in batches.order if len(ids) <= 2]
    assert steps == [[0, 0]] * 5, steps  # each generated token with the one before it
    assert alone.usage.completion_tokens == 6


def test_max_tokens_is_reported_as_length(batches):
    out = asyncio.run(backend("batched").sample(ASK, SamplingParams(n=2, temperature=0.5, max_tokens=3, seed=1)))
    assert [c.finish_reason for c in out] == ["length", "length"]
    assert [c.usage.completion_tokens for c in out] == [3, 3]
    assert batches.widest() == 2


def test_the_sequential_setting_decodes_one_sequence_at_a_time(batches, monkeypatch):
    monkeypatch.setenv(local_batch.ENV, " Sequential ")
    b = local.LocalBackend()
    assert b.engine == "sequential"
    out = asyncio.run(b.sample(ASK, SamplingParams(n=2, temperature=0.9, max_tokens=4, seed=0)))
    assert len(out) == 2 and all(c.finish_reason in ("stop", "length") for c in out)
    assert batches and batches.widest() == 1 and not batches.copies
    monkeypatch.setenv(local_batch.ENV, "parallel")
    with pytest.raises(ConfigError, match="BESTOFN_LOCAL_ENGINE must be 'batched' or 'sequential'"):
        local.LocalBackend()


@pytest.mark.parametrize("weights", ["q8_0", "bf16", "f16", "original"])
def test_every_weight_format_runs_without_flash_attention_on_both_engines(batches, monkeypatch, own_models, weights):
    """Every llama.cpp context the model makes (the sequential engine's and the batched one's) has flash attention
    off, whatever the weights (bestofn.backends.local.llama_options: it slows decoding after judge-length
    prompts), and the call cache's variant is the format alone."""
    import llama_cpp.llama_cpp as c

    monkeypatch.setenv(cpu.WEIGHTS_ENV, weights)
    made, real_init = [], c.llama_init_from_model

    def init(model, params):
        made.append(params.flash_attn_type)
        return real_init(model, params)

    monkeypatch.setattr(c, "llama_init_from_model", init)
    for engine in ("sequential", "batched"):  # a model of its own (own_models), loaded here
        b = backend(engine)
        asyncio.run(b.sample(ASK, SamplingParams(n=2, temperature=0.9, max_tokens=3, seed=0)))
    assert b.weights == weights and b.variant == (None if weights == "original" else weights)
    off = c.LLAMA_FLASH_ATTN_TYPE_DISABLED
    assert made == [off, off]  # the model's own context, then the batched engine's


def test_every_model_decodes_on_the_one_worker_thread(monkeypatch):
    """Two models (the shipped Q4_1 and the 16-bit weights) decode on one thread, so that llama.cpp's OpenMP
    threads make one team (bestofn.backends.local._worker)."""
    import threading

    import llama_cpp.llama_cpp as c

    monkeypatch.delenv(local_batch.ENV, raising=False)
    threads, real_decode = set(), c.llama_decode

    def decode(ctx, batch):
        threads.add(threading.get_ident())
        return real_decode(ctx, batch)

    monkeypatch.setattr(c, "llama_decode", decode)
    models = set()
    for weights in ("original", "bf16"):
        monkeypatch.setenv(cpu.WEIGHTS_ENV, weights)
        for engine in ("sequential", "batched"):
            b = backend(engine)
            asyncio.run(b.sample(ASK, SamplingParams(n=2, temperature=0.9, max_tokens=3, seed=0)))
            models.add(id(b._llama))
    assert len(models) == 2 and len(threads) == 1 and threading.get_ident() not in threads


def test_a_prompt_too_long_fails_its_call_only(batches):
    b = backend("batched")
    huge = [Message(role="user", content="word " * 9000)]

    async def go():
        return await asyncio.gather(b.sample(huge, SamplingParams(max_tokens=2)),
                                    b.sample(ASK, SamplingParams(max_tokens=2)), return_exceptions=True)
    too_long, fine = asyncio.run(go())
    assert "exceed context window" in str(too_long) and str(too_long).startswith("local:")
    assert fine[0].usage.completion_tokens == 2


def test_rounds_hold_at_most_round_cells_and_max_seqs():
    """The 16 judge calls of a best-of-4 (prompts of ~500 tokens, 512 to generate: 1,024 cells each) fit one round;
    more cells than ROUND_CELLS, or more sequences than MAX_SEQS, start the next round, in order."""
    from types import SimpleNamespace

    def seqs(count, prompt, max_tokens):
        return [SimpleNamespace(prompt=[0] * prompt, max_tokens=max_tokens, name=i) for i in range(count)]

    judges = seqs(16, 500, 512)
    assert [len(r) for r in local_batch.BatchEngine.rounds(None, judges)] == [16]
    big = seqs(17, 500, 512)
    rounds = local_batch.BatchEngine.rounds(None, big)
    assert [len(r) for r in rounds] == [16, 1] and [s.name for r in rounds for s in r] == list(range(17))
    assert all(len(r) * max(local_batch.kv_cells(s) for s in r) <= local_batch.ROUND_CELLS for r in rounds)
    small = seqs(local_batch.MAX_SEQS + 1, 20, 16)
    assert [len(r) for r in local_batch.BatchEngine.rounds(None, small)] == [local_batch.MAX_SEQS, 1]
