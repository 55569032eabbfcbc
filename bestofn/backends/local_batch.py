"""The embedded model's batched engine: the sequences of several calls decode together in `llama_decode` batches.

`BESTOFN_LOCAL_ENGINE=batched` (the default) or `sequential` (today's path: one `create_chat_completion` at a
time; calls asking for top logprobs always take it). The engine runs on the model's worker thread, with its own
llama.cpp context on the shared model: one KV stream per sequence.

- Calls arriving within `WINDOW_S` of each other are decoded together: the n samples of one call, the judge
  calls of one prompt (bestofn.pipeline.schedule submits them all at once).
- Prompts are made as `create_chat_completion` makes them (its own chat handler runs; the completion call it
  makes is recorded instead of run), and so are the sampler chain (penalties, the JSON-schema grammar where the
  output is constrained, top-k, typical, top-p, min-p, temperature, the seeded distribution: one per sequence)
  and the stop rules (end of generation, stop strings, max_tokens: finish_reason "length").
- A greedy reply under a grammar keeps its string budget (SamplingParams.close_strings_at: a judge's reasoning):
  past it, inside a member's string value, the quote that ends the string is taken where the grammar accepts it,
  and the model writes the rest (the score) under the grammar: finish_reason "budget". The embedded model's
  judges otherwise ramble to max_tokens on one verdict in three on some prompts, and then again in the re-ask.
- Shared prompt prefixes are evaluated once: a prefix tree over the token lists, each node decoded on one
  sequence and copied to the others (`llama_memory_seq_cp`): the rubric and question of a rubric's judge calls,
  the whole prompt of n samples. Then every live sequence decodes one token per step.
- Threads by llama.cpp's rule: n_threads for a batch of one token, n_threads_batch for more (prompts, and the
  generation steps of several sequences), both set before each step to at most the cores other processes leave
  free (bestofn.backends.local_threads).

Numerics: each sequence's KV cells are contiguous in a stream of its own, as on the sequential path. On the shipped
Q4_1 weights llama.cpp computes one token and a batch with the same kernels, so a sequence's logits are the same
numbers and a seed draws the same samples: same seeds, same texts (bench/bench_local.py compares them;
tests/test_local_batched.py asserts it). On the converted weights (Q8_0, bf16, f16:
bestofn.backends.cpu.weights_choice) a batch of two or more tokens takes llama.cpp's matrix kernels and a lone token
its dot products, whose sums round apart: in a round of one sequence, a lone token is decoded with the token before
it (that cell made again), as the sequential path's `eval` does, so that a sequence alone gives the sequential
path's text; sequences decoded together give their own, which depend on the calls they share batches with, so a
round of several decodes the lone steps of its last sequence as they are (half the work: 15 against 24 ms a step on
bf16 here, 2.4-3.3 s of the README run's 25 s, measured with flash attention still on). One KV cache shared by all
sequences (their cells interleaved) changed all four of four sampled texts, and is not used. Greedy decoding under a
grammar (the judges' verdicts) takes the most likely token when the grammar accepts it and applies the grammar to
the whole vocabulary only when it does not: the same token, without the grammar's pass over 49k tokens at every step
(as costly as the step's decode).

Speed (bench/bench_local.py, 2-core AMD EPYC, idle, against the sequential engine on Q4_1): on Q4_1 the x86
kernels decode 4 sequences in a step no faster per thread than in 4 steps, and the batched engine's gain is the
second core (`bestofn run -n 4` 36.3 s -> 24.2 s); on bf16 weights prompts evaluate 2.8-3.6x faster and 4
sequences decode 1.2-1.35x faster than on Q4_1: the default panel's 16 judge calls of a best-of-4 3.8x faster
(30.1 -> 8.0 s), generation at n=4 1.7x the tokens/s (89% of llama.cpp's own 4-sequence decode),
`bestofn run -n 4` 14.5 s (36.3 s today).
"""

from __future__ import annotations

import concurrent.futures
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from bestofn.backends.base import Completion, SamplingParams
from bestofn.backends.local_sequence import Sequence, common_prefix, kv_cells, sequences
from bestofn.errors import ConfigError

ENV = "BESTOFN_LOCAL_ENGINE"
ENGINES = ("batched", "sequential")
#: sequences one round decodes together (SamplingParams.n is at most 64)
MAX_SEQS = 64
#: KV cells one round holds, all its streams together: twice the sequential path's context (378 MB for
#: SmolLM2-135M), so that the 16 judge calls of a best-of-4 decode in one round, not two (judging 1.15x faster)
ROUND_CELLS = 16384
#: calls arriving within this many seconds of the last one join its batch, for at most MAX_WAIT_S
WINDOW_S = 0.025
MAX_WAIT_S = 0.15


def engine_choice() -> str:
    raw = os.environ.get(ENV, "").strip().lower() or ENGINES[0]
    if raw not in ENGINES:
        raise ConfigError(f"{ENV} must be 'batched' or 'sequential', got {raw!r}")
    return raw


# -- the engine -----------------------------------------------------------------------------------------------


class BatchEngine:
    """A llama.cpp context on `llama`'s model with one KV stream per sequence (`kv_unified` off: each sequence's
    cells contiguous, as on the sequential path, and attention over its own cells only), sized for the round it
    runs and kept while later rounds fit. Runs on the model's worker thread only; closed with the model
    (registered on the Llama's exit stack, so before it)."""

    def __init__(self, llama: Any) -> None:
        from llama_cpp import _internals

        self.llama = llama
        self.n_ctx = llama.n_ctx()  # each sequence's limit, as on the sequential path
        self.n_batch = llama.n_batch
        self._ctx: Any = None
        self.shape = (0, 0)  # (sequences, cells per sequence) of the current context
        self._batch = _internals.LlamaBatch(n_tokens=self.n_batch, embd=0, n_seq_max=1, verbose=False)
        self._seqs: list[Sequence] = []  # the round's sequences, by seq_id
        self._vocab = llama._model.vocab
        llama._stack.callback(self.close)

    def close(self) -> None:
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        self._batch.close()

    def _context(self, n_seqs: int, stream: int) -> None:
        """A context for n_seqs streams of `stream` cells: the current one if it has enough streams and cells,
        but not more than twice the cells (a prefix is copied to another stream whole)."""
        from llama_cpp import _internals

        seqs, cells = self.shape
        if self._ctx is not None and n_seqs <= seqs and stream <= cells <= 2 * stream:
            return
        if self._ctx is not None:
            self._ctx.close()
            self._ctx = None
        params = type(self.llama.context_params).from_buffer_copy(self.llama.context_params)
        params.n_ctx, params.n_seq_max, params.kv_unified = n_seqs * stream, n_seqs, False
        self._ctx = _internals.LlamaContext(model=self.llama._model, params=params, verbose=False)
        self.shape = (n_seqs, stream)

    def rounds(self, seqs: list[Sequence]) -> list[list[Sequence]]:
        """Consecutive sequences packed into rounds of at most MAX_SEQS whose streams (each the round's longest
        prompt and max_tokens, in blocks of 256 cells) fit in ROUND_CELLS together: the engine never holds more
        than twice the KV cells of the sequential path's context (8192 per sequence)."""
        out: list[list[Sequence]] = []
        stream = 0
        for s in seqs:
            need = kv_cells(s)
            if out and len(out[-1]) < MAX_SEQS and (len(out[-1]) + 1) * max(stream, need) <= ROUND_CELLS:
                out[-1].append(s)
                stream = max(stream, need)
            else:
                out.append([s])
                stream = need
        return out

    def run(self, seqs: list[Sequence]) -> None:
        """Decode one round to the end: every sequence gets its text and finish reason."""
        import llama_cpp.llama_cpp as C

        stream = max(kv_cells(s) for s in seqs)
        self._context(len(seqs), stream)
        C.llama_memory_clear(self._ctx.memory, False)
        started = time.perf_counter()
        for i, s in enumerate(seqs):
            s.seq_id, s.started = i, started
        self._seqs = list(seqs)
        pending = self._compact(self._prefill(seqs))
        while pending:
            shift = self._decode([(s.tokens[-1], len(s.prompt) + len(s.tokens) - 1, s.seq_id, True) for s in pending])
            for i, s in enumerate(pending):
                self._sample(s, i + shift)
            for s in pending:
                if s.finish is not None:
                    C.llama_memory_seq_rm(self._ctx.memory, s.seq_id, -1, -1)
            pending = self._compact([s for s in pending if s.finish is None])

    def _compact(self, live: list[Sequence]) -> list[Sequence]:
        """The live sequences on streams 0..k-1, in stream order: each one above k moves (its KV stream copied
        whole) into a stream a finished sequence left empty. llama.cpp splits a batch whose streams have gaps or
        come out of order into more, smaller steps (bf16, 2 threads, a step of 3 sequences on streams 0, 1, 2:
        12.7-13.9 ms; on 0, 2, 3: 23.7-26.3 ms; 0, 2, 1: 24.3 ms; 4 sequences 3, 2, 1, 0: 45.4 ms against 18.7 ms in
        order). The copy moves a sequence's cache as it is (tests/test_local_batched.py: on Q4_1 the texts stay the
        sequential path's)."""
        import llama_cpp.llama_cpp as C

        taken = {s.seq_id for s in live}
        holes = [i for i in range(len(live)) if i not in taken]
        movers = sorted((s for s in live if s.seq_id >= len(live)), key=lambda s: s.seq_id)
        for s, hole in zip(movers, holes):
            C.llama_memory_seq_cp(self._ctx.memory, s.seq_id, hole, -1, -1)
            C.llama_memory_seq_rm(self._ctx.memory, s.seq_id, -1, -1)
            self._seqs[hole], s.seq_id = s, hole
        return sorted(live, key=lambda s: s.seq_id)

    def _prefill(self, seqs: list[Sequence]) -> list[Sequence]:
        """Evaluate the prompts as a prefix tree, breadth first: a node's tokens on its first sequence, then
        copied to the others; each sequence samples its first token from the logits of its prompt's last token.
        Returns the sequences still generating."""
        import llama_cpp.llama_cpp as C

        level = [(0, seqs)]
        while level:
            work: list[tuple[int, int, int, bool]] = []  # token, position, sequence, logits wanted
            waiting: dict[int, list[Sequence]] = {}  # index in `work` -> sequences sampling from its logits
            copies, children = [], []
            for start, members in level:
                owner = members[0]
                end = min(common_prefix(owner.prompt, m.prompt) for m in members)
                done = [m for m in members if len(m.prompt) == end]
                work.extend((owner.prompt[p], p, owner.seq_id, bool(done) and p == end - 1) for p in range(start, end))
                if done:
                    waiting[len(work) - 1] = done
                copies.extend((owner.seq_id, m.seq_id) for m in members[1:])
                groups: dict[int, list[Sequence]] = {}
                for m in members:
                    if len(m.prompt) > end:
                        groups.setdefault(m.prompt[end], []).append(m)
                children.extend((end, g) for g in groups.values())
            # one sequence per llama_decode, as the sequential path evaluates a prompt: several at once would
            # split into more, smaller ubatches (one KV stream each) for no less compute
            for chunk_start, chunk in _chunks(work, self.n_batch):
                shift = self._decode(chunk)
                for index in range(chunk_start, chunk_start + len(chunk)):
                    for s in waiting.get(index, ()):
                        self._sample(s, index - chunk_start + shift)
            for src, dst in copies:  # across streams only whole: the owner holds exactly the prefix so far
                C.llama_memory_seq_cp(self._ctx.memory, src, dst, -1, -1)
            level = children
        return [s for s in seqs if s.finish is None]

    def _decode(self, items: list[tuple[int, int, int, bool]]) -> int:
        """One llama_decode of (token, position, sequence, logits wanted) items. Returns by how much their batch
        indices moved: with the model's `min_batch` 2 (converted weights), in a round of one sequence, a lone token
        is decoded with the token before it in its sequence (that cell made again), as the sequential path's
        `eval` does: every decode then takes llama.cpp's matrix kernels, and the sequence's numbers are the
        sequential path's. A round of several sequences depends on its batches anyway (module docstring)."""
        import llama_cpp.llama_cpp as C

        shift = 0
        if len(items) == 1 and self.llama.min_batch > 1 and items[0][1] > 0 and len(self._seqs) == 1:
            token, pos, seq, _ = items[0]
            owner = self._seqs[seq]
            before = owner.prompt[pos - 1] if pos - 1 < len(owner.prompt) else owner.tokens[pos - 1 - len(owner.prompt)]
            C.llama_memory_seq_rm(self._ctx.memory, seq, pos - 1, -1)
            items, shift = [(before, pos - 1, seq, False), items[0]], 1
        self.llama.fit_threads(self._ctx.ctx)
        batch = self._batch.batch
        batch.n_tokens = len(items)
        for i, (token, pos, seq, logits) in enumerate(items):
            batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = token, pos, 1, logits
            batch.seq_id[i][0] = seq
        code = C.llama_decode(self._ctx.ctx, batch)
        if code != 0:
            raise RuntimeError(f"llama_decode returned {code} for a batch of {len(items)} tokens")
        return shift

    def _sample(self, s: Sequence, index: int) -> None:
        import llama_cpp.llama_cpp as C

        token = s.sampler.sample(self._ctx.ctx, index, s.prefer())
        s.accept(token, C.llama_vocab_is_eog(self._vocab, token), self.llama.detokenize([token]),
                 room=min(self.n_ctx, self.shape[1]))


def _chunks(work: list[tuple[int, int, int, bool]], size: int):
    """(offset, items): runs of consecutive items of one sequence, at most `size` long."""
    start = 0
    for i in range(1, len(work) + 1):
        if i == len(work) or work[i][2] != work[start][2] or i - start == size:
            yield start, work[start:i]
            start = i


# -- gathering calls ------------------------------------------------------------------------------------------


@dataclass
class _Request:
    messages: list[dict[str, str]]
    params: SamplingParams
    future: concurrent.futures.Future


class Batcher:
    """Collects the calls made to one model within a short window and runs them together on its worker."""

    def __init__(self, llama: Any, executor: concurrent.futures.Executor) -> None:
        self.llama, self.executor = llama, executor
        self.engine: BatchEngine | None = None
        self._lock = threading.Lock()
        self._pending: list[_Request] = []
        self._timer: threading.Timer | None = None
        self._first = self._last = 0.0

    def submit(self, messages: list[dict[str, str]], params: SamplingParams) -> concurrent.futures.Future:
        """A future of the call's `params.n` completions (ValueError where a prompt cannot fit)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._lock:
            self._pending.append(_Request(messages, params, future))
            self._last = time.monotonic()
            if self._timer is None:
                self._first = self._last
                self._arm(WINDOW_S)
        return future

    def _arm(self, delay: float) -> None:
        self._timer = threading.Timer(delay, self._tick)
        self._timer.daemon = True
        self._timer.start()

    def _tick(self) -> None:
        with self._lock:
            now = time.monotonic()
            if now - self._last < WINDOW_S and now - self._first < MAX_WAIT_S:
                self._arm(WINDOW_S - (now - self._last))
                return
            batch, self._pending, self._timer = self._pending, [], None
        try:
            self.executor.submit(self.run, batch)
        except RuntimeError as exc:  # the executor was shut down (interpreter exit)
            for request in batch:
                if not request.future.done():
                    request.future.set_exception(exc)

    def run(self, batch: list[_Request]) -> None:
        """On the model's worker thread: every call of `batch` decoded, in rounds that fit the KV cache."""
        live = [r for r in batch if r.future.set_running_or_notify_cancel()]
        try:
            if self.engine is None:
                self.engine = BatchEngine(self.llama)
            seqs: list[Sequence] = []
            for index, request in enumerate(live):
                try:
                    seqs.extend(sequences(self.llama, index, request.messages, request.params))
                except ValueError as exc:
                    request.future.set_exception(exc)
            for round_ in self.engine.rounds(seqs):
                self.engine.run(round_)
        except Exception as exc:  # a failed decode fails every call of the batch
            for request in live:
                if not request.future.done():
                    request.future.set_exception(exc)
            return
        by_request: dict[int, list[Completion]] = {}
        for s in seqs:
            by_request.setdefault(s.request, []).append(s.completion())
        for index, request in enumerate(live):
            if not request.future.done():
                request.future.set_result(by_request[index])


_batchers_lock = threading.Lock()


def batcher_for(llama: Any, executor: concurrent.futures.Executor) -> Batcher:
    """The one Batcher of a loaded model (kept on the Llama instance, so that it goes with it)."""
    with _batchers_lock:
        batcher = llama.__dict__.get("_bestofn_batcher")
        if batcher is None:
            batcher = llama.__dict__["_bestofn_batcher"] = Batcher(llama, executor)
        return batcher
