"""One sequence of the batched local engine (bestofn.backends.local_batch), made as `create_chat_completion` makes
its single one: the prompt's tokens by the model's own chat handler (it runs; the completion call it makes is
recorded instead of run), the sampler chain `Llama._init_sampler` builds for those arguments, and
`Llama._create_completion`'s stop rules, token by token."""

from __future__ import annotations

import ctypes
import json
import time
from dataclasses import dataclass, field
from typing import Any

from bestofn.backends.base import Completion, SamplingParams
from bestofn.records import Usage


# -- prompts and samplers, as create_chat_completion makes them ------------------------------------------------


class _Recorded(Exception):
    def __init__(self, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs


class _Recorder:
    """The Llama, except that `create_completion` records its arguments instead of generating."""

    def __init__(self, llama: Any) -> None:
        self._llama = llama

    def __getattr__(self, name: str) -> Any:
        return getattr(self._llama, name)

    def create_completion(self, **kwargs: Any) -> Any:
        raise _Recorded(kwargs)


#: llama-cpp-python's JSON-schema grammar lets raw control characters (a newline) into strings, which is not JSON
#: (its issue 1259); llama.cpp's own converter excludes them, as this does
_CHAR, _JSON_CHAR = r'char ::= [^"\\]', r'char ::= [^"\\\x7F\x00-\x1F]'


def json_grammar(schema: dict[str, Any]) -> Any:
    """The grammar of a JSON schema, as llama-cpp-python's chat handler makes it for `response_format`, with
    strings that hold no raw control characters (the embedded model's judges wrote newlines into their reasoning:
    replies no JSON parser takes)."""
    from llama_cpp.llama_grammar import LlamaGrammar, json_schema_to_gbnf

    gbnf = json_schema_to_gbnf(json.dumps(schema))
    return LlamaGrammar.from_string(gbnf.replace(_CHAR, _JSON_CHAR), verbose=False)


def completion_call(llama: Any, messages: list[dict[str, str]], params: SamplingParams, seed: int) -> dict[str, Any]:
    """The arguments today's path (`create_chat_completion`) hands to `create_completion`: the prompt's tokens
    by the model's chat handler, stop strings, the grammar of the JSON schema (`json_grammar`), the sampling
    defaults."""
    kwargs: dict[str, Any] = dict(messages=messages, temperature=params.temperature, max_tokens=params.max_tokens,
                                  seed=seed)
    if params.json_schema is not None:
        kwargs["grammar"] = json_grammar(params.json_schema)
    try:
        type(llama).create_chat_completion(_Recorder(llama), **kwargs)
    except _Recorded as recorded:
        return recorded.kwargs
    raise RuntimeError("the chat handler made no completion call")  # pragma: no cover


class Sampler:
    """One sequence's sampling, as `Llama._init_sampler` builds it for these arguments (no logits processors):
    penalties, the grammar, then greedy, or top-k, typical, top-p, min-p, temperature and the seeded
    distribution. Greedy decoding under a grammar with neutral penalties (the judges' verdicts) makes the same
    choice cheaper: the most likely token, checked against the grammar alone, and the grammar applied to the whole
    vocabulary only when it refuses that token (the grammar's pass over 49k tokens cost as much as a decode step)."""

    def __init__(self, llama: Any, call: dict[str, Any], seed: int) -> None:
        import llama_cpp.llama_cpp as C
        from llama_cpp import _internals

        self._C = C
        grammar, temp = call.get("grammar"), call["temperature"]
        neutral = call["repeat_penalty"] == 1.0 and call["frequency_penalty"] == 0.0 and call["presence_penalty"] == 0.0
        self.n_vocab = llama.n_vocab()
        self.grammar: Any = None
        self.chain: Any = None
        if grammar is not None and temp == 0.0 and neutral:
            self.grammar = C.llama_sampler_init_grammar(llama._model.vocab, grammar._grammar.encode("utf-8"),
                                                        grammar._root.encode("utf-8"))
            if not self.grammar:
                raise ValueError("llama.cpp could not parse the JSON schema's grammar")
            return
        self.chain = _internals.LlamaSampler()
        self.chain.add_penalties(n_vocab=self.n_vocab, penalty_last_n=llama.last_n_tokens_size,
                                 penalty_repeat=call["repeat_penalty"], penalty_freq=call["frequency_penalty"],
                                 penalty_present=call["presence_penalty"])
        if grammar is not None:
            self.chain.add_grammar(llama._model, grammar)
        if temp < 0.0:
            self.chain.add_dist(seed)
        elif temp == 0.0:
            self.chain.add_greedy()
        else:
            self.chain.add_top_k(call["top_k"])
            self.chain.add_typical(call["typical_p"], 1)
            self.chain.add_top_p(call["top_p"], 1)
            self.chain.add_min_p(call["min_p"], 1)
            self.chain.add_temp(temp)
            self.chain.add_dist(seed)

    def sample(self, ctx: Any, index: int, prefer: int | None = None) -> int:
        """The token chosen from the logits of batch position `index`, accepted into the sampler's state. Greedy
        under a grammar, `prefer` is taken instead wherever the grammar accepts it."""
        C = self._C
        if self.grammar is None:
            return C.llama_sampler_sample(self.chain.sampler, ctx, index)
        import numpy as np

        if prefer is not None and self._accepts(prefer):
            C.llama_sampler_accept(self.grammar, prefer)
            return prefer
        logits = np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, index), shape=(self.n_vocab,))
        token = int(np.argmax(logits))  # the first of equal maxima, as llama.cpp's greedy sampler picks
        if not self._accepts(token):
            cells = np.empty(self.n_vocab, dtype=np.dtype([("id", np.intc), ("logit", np.single), ("p", np.single)],
                                                          align=True))
            cells["id"], cells["logit"], cells["p"] = np.arange(self.n_vocab), logits, 0.0
            C.llama_sampler_apply(self.grammar, ctypes.byref(C.llama_token_data_array(
                data=cells.ctypes.data_as(C.llama_token_data_p), size=self.n_vocab, selected=-1, sorted=False)))
            token = int(np.argmax(cells["logit"]))
        C.llama_sampler_accept(self.grammar, token)
        return token

    def _accepts(self, token: int) -> bool:
        """Whether the grammar, in its state now, accepts `token` next."""
        C = self._C
        one = C.llama_token_data(id=token, logit=1.0, p=0.0)
        C.llama_sampler_apply(self.grammar, ctypes.byref(C.llama_token_data_array(
            data=ctypes.pointer(one), size=1, selected=-1, sorted=False)))
        return one.logit != -float("inf")

    def close(self) -> None:
        if self.grammar:
            self._C.llama_sampler_free(self.grammar)
            self.grammar = None
        if self.chain is not None:
            self.chain.close()

    __del__ = close


# -- one sequence ---------------------------------------------------------------------------------------------


@dataclass
class Sequence:
    request: int
    prompt: list[int]
    max_tokens: int
    sampler: Sampler
    stop: list[bytes]
    bos: int
    seq_id: int = -1
    tokens: list[int] = field(default_factory=list)
    raw: bytes = b""
    text: bytes = b""
    multibyte_fix: int = 0
    finish: str | None = None
    started: float = 0.0
    ended: float = 0.0
    #: the string budget (SamplingParams.close_strings_at) of a greedy reply under a grammar, and the token `"`
    close_at: int | None = None
    quote: int = -1
    in_string: bool = False
    escaped: bool = False
    last: int = 0
    #: whether the budget ended a string (the completion's finish_reason is then "budget")
    closed: bool = False

    def prefer(self) -> int | None:
        """The token to take over the model's choice where the grammar accepts it: past the string budget,
        inside a JSON string that is a member's value, the quote that ends it (once)."""
        past = self.close_at is not None and len(self.tokens) >= self.close_at and not self.closed
        return self.quote if past and self.in_string and self.last == 0x3A else None

    def _track(self, piece: bytes) -> None:
        """Whether the reply is inside a JSON string after `piece` (quotes, and backslash escapes in strings), and
        the last character outside strings before it (a colon: the string is a value, not a key)."""
        for byte in piece:
            if self.escaped:
                self.escaped = False
            elif self.in_string:
                self.escaped = byte == 0x5C
                self.in_string = byte != 0x22
            elif byte == 0x22:
                self.in_string = True
            elif byte not in b" \t\r\n":
                self.last = byte

    def accept(self, token: int, eog: bool, piece: bytes, room: int) -> None:
        """`Llama._create_completion`'s rules for one sampled token: end of generation, incomplete UTF-8 held
        back, stop strings, max_tokens; and the end of the KV cells (`room`), which only a character still
        incomplete at max_tokens reaches."""
        if eog:
            self._end(self._detokenized(), "budget" if self.closed else "stop")
            return
        forced = token == self.prefer()  # the budget's quote, taken (an escaped one leaves the string open)
        self.tokens.append(token)
        self.raw += piece
        if self.close_at is not None:
            self._track(piece)
            self.closed = self.closed or (forced and not self.in_string)
        all_text = self._detokenized()
        for k, char in enumerate(all_text[-3:]):
            k = 3 - k
            for num, pattern in [(2, 192), (3, 224), (4, 240)]:
                if num > k and pattern & char == pattern:
                    self.multibyte_fix = num - k
        hits = [] if self.multibyte_fix > 0 else [s for s in self.stop if s in all_text]
        if hits:
            self._end(all_text[: all_text.index(hits[0])], "budget" if self.closed else "stop")
        elif self.multibyte_fix > 0:
            self.multibyte_fix -= 1
            if len(self.prompt) + len(self.tokens) >= room:
                self._end(all_text, "length")
        elif len(self.tokens) >= self.max_tokens:
            self._end(all_text, "length")

    def _detokenized(self) -> bytes:
        # LlamaModel.detokenize drops the leading space of a reply that starts with BOS
        return self.raw[1:] if self.tokens and self.tokens[0] == self.bos and self.raw[:1] == b" " else self.raw

    def _end(self, text: bytes, reason: str) -> None:
        self.text, self.finish, self.ended = text, reason, time.perf_counter()
        self.sampler.close()

    def completion(self) -> Completion:
        return Completion(text=self.text.decode("utf-8", errors="ignore"), finish_reason=self.finish,
                          usage=Usage(prompt_tokens=len(self.prompt), completion_tokens=len(self.tokens)),
                          latency_s=self.ended - self.started)


def sequences(llama: Any, request: int, messages: list[dict[str, str]], params: SamplingParams) -> list[Sequence]:
    """The n sequences of one call (seeds seed, seed+1, ... as on the sequential path), with its limits: a
    ValueError where the prompt cannot fit the model's context, max_tokens cut to what fits."""
    call = completion_call(llama, messages, params, params.seed)
    prompt, n_ctx = call["prompt"], llama.n_ctx()  # one list for the n samples: its prefix is all shared
    if len(prompt) >= n_ctx:
        raise ValueError(f"Requested tokens ({len(prompt)}) exceed context window of {n_ctx}")
    max_tokens = call["max_tokens"]
    if max_tokens is None or max_tokens <= 0 or max_tokens + len(prompt) >= n_ctx:
        max_tokens = n_ctx - len(prompt)
    stop = call["stop"] if isinstance(call["stop"], list) else [call["stop"]] if call["stop"] else []
    out = [Sequence(request, prompt, max_tokens, Sampler(llama, call, params.seed + i),
                    [s.encode("utf-8") for s in stop], llama.token_bos()) for i in range(params.n)]
    quote = quote_token(llama) if params.close_strings_at is not None else None
    if quote is not None:  # a budget only greedy replies under a grammar keep (Sampler.sample)
        for s in out:
            if s.sampler.grammar is not None:
                s.close_at, s.quote = params.close_strings_at, quote
    return out


def quote_token(llama: Any) -> int | None:
    """The token that spells `"` alone, which ends a string at its budget; None where the model's tokenizer
    makes it otherwise (two tokens, or with a space before it): no budget is kept there."""
    tokens = llama.tokenize(b'"', add_bos=False, special=False)
    return tokens[0] if len(tokens) == 1 and llama.detokenize(tokens) == b'"' else None


def kv_cells(s: Sequence) -> int:
    """KV cells a sequence can fill (its prompt and max_tokens), rounded up to llama.cpp's 256-cell blocks."""
    return -(-(len(s.prompt) + s.max_tokens) // 256) * 256


def common_prefix(a: list[int], b: list[int]) -> int:
    if a is b:
        return len(a)
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return n
