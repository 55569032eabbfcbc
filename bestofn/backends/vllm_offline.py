"""`vllm-offline:MODEL`: an in-process `vllm.LLM` (GPU machines; `pip install 'bestofn[vllm]'`).

Written against vLLM 0.12.0's documented API (docs.vllm.ai/en/v0.12.0): `LLM(model=...)`,
`LLM.chat(conversations, sampling_params=[...], use_tqdm=False) -> list[RequestOutput]`, and
`SamplingParams(n, temperature, max_tokens, seed, logprobs, structured_outputs=StructuredOutputsParams(json=...))`
(`best_of` and the `guided_*` fields are gone upstream since 0.12). `vllm` is imported only when the backend
is first used.

`vllm.LLM` is synchronous and batches internally, so calls that arrive together (a judge panel's calls on n
candidates) are gathered for a moment and sent as ONE `LLM.chat` batch from one worker thread.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bestofn.backends.base import Backend, Completion, SamplingParams, TokenLogprob
from bestofn.errors import BackendError, ConfigError, MissingExtraError
from bestofn.records import Message, Usage

BATCH_WINDOW_S = 0.005


def sampling_kwargs(params: SamplingParams) -> dict[str, Any]:
    """Our SamplingParams as `vllm.SamplingParams` keyword arguments. `structured_outputs` is given as the
    keyword arguments of `StructuredOutputsParams` (built by `to_vllm_params` once vllm is imported)."""
    kwargs: dict[str, Any] = {
        "n": params.n,
        "temperature": params.temperature,
        "max_tokens": params.max_tokens,
        "seed": params.seed,
    }
    if params.top_logprobs is not None:
        kwargs["logprobs"] = params.top_logprobs  # vLLM returns the sampled token's logprob plus the top k
    if params.json_schema is not None:
        kwargs["structured_outputs"] = {"json": params.json_schema}
    return kwargs


def to_vllm_params(params: SamplingParams, vllm_sampling: Any) -> Any:
    """Build a `vllm.SamplingParams` from ours; `vllm_sampling` is the `vllm.sampling_params` module."""
    kwargs = sampling_kwargs(params)
    if "structured_outputs" in kwargs:
        kwargs["structured_outputs"] = vllm_sampling.StructuredOutputsParams(**kwargs["structured_outputs"])
    return vllm_sampling.SamplingParams(**kwargs)


def completions_from(output: Any, latency_s: float) -> list[Completion]:
    """One Completion per `CompletionOutput` of a `RequestOutput`; the prompt's tokens count once."""
    prompt_tokens = len(getattr(output, "prompt_token_ids", None) or [])
    out = []
    for i, o in enumerate(output.outputs):
        logprobs = None
        if getattr(o, "logprobs", None):
            logprobs = []
            for token_id, step in zip(o.token_ids, o.logprobs):
                chosen = step.get(token_id)
                top = {lp.decoded_token: lp.logprob for lp in step.values() if lp.decoded_token is not None}
                logprobs.append(TokenLogprob(
                    token=(chosen.decoded_token if chosen and chosen.decoded_token is not None else str(token_id)),
                    logprob=chosen.logprob if chosen else float("-inf"),
                    top=top,
                ))
        out.append(Completion(
            text=o.text,
            finish_reason=o.finish_reason,
            usage=Usage(prompt_tokens=prompt_tokens if i == 0 else 0, completion_tokens=len(o.token_ids)),
            latency_s=latency_s,
            logprobs=logprobs,
        ))
    return out


class VLLMOfflineBackend(Backend):
    serial = False

    def __init__(self, model: str, **llm_kwargs: Any) -> None:
        if not model:
            raise ConfigError("the vllm-offline backend needs a model: vllm-offline:MODEL (a HF id or a local path)")
        self.model, self.spec, self.llm_kwargs = model, f"vllm-offline:{model}", llm_kwargs
        self._llm: Any = None
        self._sampling: Any = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vllm")
        self._pending: list[tuple[list[dict[str, str]], SamplingParams, asyncio.Future[list[Completion]]]] = []
        self._flush: asyncio.TimerHandle | None = None

    def _ensure(self) -> Any:
        if self._llm is None:
            try:
                import vllm
                import vllm.sampling_params as sampling
            except ModuleNotFoundError as exc:
                raise MissingExtraError("the vllm-offline backend", "vllm", "vllm") from exc
            self._sampling = sampling
            self._llm = vllm.LLM(model=self.model, **self.llm_kwargs)
        return self._llm

    def _run_batch(self, conversations: list[list[dict[str, str]]], params: list[SamplingParams]) -> tuple[list[Any], float]:
        llm = self._ensure()
        started = time.perf_counter()
        outputs = llm.chat(conversations, sampling_params=[to_vllm_params(p, self._sampling) for p in params],
                           use_tqdm=False)
        return outputs, time.perf_counter() - started

    async def sample(self, messages: list[Message], params: SamplingParams) -> list[Completion]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Completion]] = loop.create_future()
        self._pending.append(([m.model_dump() for m in messages], params, future))
        if self._flush is None:
            self._flush = loop.call_later(BATCH_WINDOW_S, lambda: asyncio.ensure_future(self._submit()))
        return await future

    async def _submit(self) -> None:
        batch, self._pending, self._flush = self._pending, [], None
        loop = asyncio.get_running_loop()
        try:
            outputs, latency = await loop.run_in_executor(
                self._executor, self._run_batch, [b[0] for b in batch], [b[1] for b in batch]
            )
        except Exception as exc:  # noqa: BLE001 - every waiting call learns why
            error = exc if isinstance(exc, (BackendError, MissingExtraError)) else BackendError(self.spec, str(exc))
            for *_, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, params, future), output in zip(batch, outputs):
            if not future.done():
                completions = completions_from(output, latency)
                if len(completions) != params.n:
                    future.set_exception(BackendError(self.spec, f"asked for n={params.n}, got {len(completions)}"))
                else:
                    future.set_result(completions)
