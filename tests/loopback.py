"""A small, real OpenAI-compatible HTTP server for tests and benchmarks (loopback only, no model).

It speaks HTTP/1.1 with keep-alive on 127.0.0.1, with a listen backlog of 512 and Nagle off, on its own
event loop in a daemon thread, so a test's own loop (and the SDK clients in it) talk to it over real TCP.

    from tests.loopback import LoopbackServer

    with LoopbackServer(latency=0.02) as srv:          # or the `loopback` pytest fixture (see below)
        client = AsyncOpenAI(base_url=srv.base_url, api_key="x")   # srv.base_url ends in /v1
        ...
        srv.count                  # chat-completion requests answered so far (faults included)
        srv.requests               # list[Request]: .method .path .headers .body (parsed JSON) .status
                                   #   .at (arrival) .done (answered), on time.monotonic()'s clock
        srv.chat_requests()        # the POST /v1/chat/completions ones
        srv.inject(429, times=2, retry_after=0.05)     # the next 2 chat requests get a 429 with retry-after
        srv.inject(500)                                 # the next one gets a 500 (also 400, 401, 404, 503...)
        srv.inject(429, headers={"retry-after-ms": "20"})   # any extra response headers (an HTTP-date retry-after...)
        srv.inject(200, body=b"<html>oops</html>")     # a raw (non-JSON) body instead of the JSON error
        srv.inject(200, action="truncate")             # a complete HTTP reply whose JSON body is cut in half
        srv.inject(200, action="midstream")            # headers and half the body, then a TCP reset
        srv.inject(200, action="reset")                # a TCP reset before any byte of the reply
        srv.inject(200, delay=2.0)                     # stall 2 s, then answer normally (client timeouts)
        srv.hook = lambda req: Fault(200, action="reset") or None   # a hook may return a Fault too
        srv.hook = lambda req: (503, {"error": {...}}) or None   # any request; return None to answer normally
        srv.reset()                # forget requests and pending faults
        srv.max_in_flight          # the most chat requests the server held at once (for concurrency limits)
        srv.latency_fn = lambda req: 0.3 if req.body.get("seed") == 2 else 0.0   # per-request latency

Endpoints
- POST /v1/chat/completions: answers `n` choices (capped by `max_choices`, e.g. 1 to act like
  llama-cpp-python's server, which silently returns one). Each choice's text is deterministic per
  (messages, seed, choice index, model): a short sentence of words. With `response_format`
  `{"type": "json_schema", "json_schema": {"schema": S}}` or `{"type": "json_object", "schema": S}` the
  content is a JSON object VALID for S (strings, integers within minimum/maximum, numbers, booleans, enums,
  const, arrays with min/maxItems, nested objects, $ref/$defs, anyOf), drawn from an RNG seeded the same
  way, so the scores differ per candidate and per seed. `logprobs`/`top_logprobs` are answered. `usage`
  counts words. `flavour="llama-cpp"` answers a json_schema response_format with a 500, like the real one.
- GET /v1/models: `{"object": "list", "data": [{"id": ..., "owned_by": owned_by}]}`.
- A `models=[...]` list makes other model names a 404 `model_not_found` (OpenAI's shape).

Options: latency (seconds before each chat answer, asyncio.sleep, so calls overlap; `latency_fn`, if set,
overrides it per request), max_choices, flavour ("openai" | "vllm" | "llama-cpp" | "llama-server"; sets
`owned_by` and json_schema handling), models, owned_by, port.

`value_for(schema, rng)` (a value valid for a JSON schema) is usable on its own, e.g. in a MockTransport.
`completion_body(text, ...)` is a chat.completion body with one choice, for hooks that script a model's reply.

Run it alone (for benchmarks, so its CPU is not the client's): `python -m tests.loopback --port 0
--latency 0.1` prints `LISTENING http://127.0.0.1:PORT/v1` on stdout and serves until killed.

The pytest fixture `loopback` (function-scoped, defined here; conftest re-exports it) yields a fresh server
with latency 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

WORDS = (
    "the sky is blue because air scatters short light waves more than long ones so we see blue "
    "sunlight reaches earth through a thick layer of gas and dust which bends and spreads every colour "
    "a careful answer names the cause gives an example and stays short clear and kind to the reader"
).split()

ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", None),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("server_error", None),
}
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
           429: "Too Many Requests", 500: "Internal Server Error", 503: "Service Unavailable"}


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: Any
    status: int = 0  # the status the server answered with
    action: str | None = None  # the fault action applied to this request (reset, midstream, truncate)
    at: float = field(default_factory=time.monotonic)  # arrival (time.monotonic, same clock as the tests')
    done: float = 0.0  # when the answer was written


@dataclass
class Fault:
    """One injected fault. `status` with an error body (or `body`, raw bytes, as is), `retry_after` (seconds, a
    header) and any other `headers`; `action`: "reset" (TCP reset before any byte), "midstream" (headers and half
    the body, then a reset), "truncate" (a complete reply whose body is cut in half); `delay`: seconds to stall
    first. A Fault with status 200 and no body/action answers normally after its delay."""

    status: int
    retry_after: float | None = None
    message: str | None = None
    headers: dict[str, str] | None = None
    body: bytes | None = None
    action: str | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        assert self.action in (None, "reset", "midstream", "truncate"), self.action


Reply = tuple[int, Any] | tuple[int, Any, dict[str, str]]


def error_body(status: int, message: str | None = None) -> dict[str, Any]:
    etype, code = ERROR_TYPES.get(status, ("server_error", None))
    return {"error": {"message": message or f"injected {status}", "type": etype, "param": None, "code": code}}


def completion_body(text: str, *, model: str = "loopback", finish_reason: str = "stop", n: int = 1) -> dict[str, Any]:
    """A chat.completion with `n` identical choices whose content is `text` (for hooks scripting a reply)."""
    choices = [{"index": i, "message": {"role": "assistant", "content": text}, "finish_reason": finish_reason,
                "logprobs": None} for i in range(n)]
    tokens = len(text.split()) * n
    return {"id": "chatcmpl-scripted", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": choices, "usage": {"prompt_tokens": 1, "completion_tokens": tokens, "total_tokens": tokens + 1}}


# ---------------------------------------------------------------------------------------------- content


def _rng(*parts: Any) -> random.Random:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _resolve(schema: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        ref = schema["$ref"]
        assert ref.startswith("#/"), f"only local $refs are supported, got {ref}"
        node: Any = root
        for part in ref[2:].split("/"):
            node = node[part]
        schema = {**node, **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def value_for(schema: dict[str, Any], rng: random.Random, root: dict[str, Any] | None = None) -> Any:
    """A value valid for a JSON schema (the subset pydantic emits and the judges use)."""
    root = root if root is not None else schema
    schema = _resolve(schema, root)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return rng.choice(schema["enum"])
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = [o for o in schema[key] if _resolve(o, root).get("type") != "null"] or schema[key]
            return value_for(options[0], rng, root)
    if "allOf" in schema:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            merged.update(_resolve(part, root))
        return value_for(merged, rng, root)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "string"
    if kind == "object":
        props = schema.get("properties", {})
        return {name: value_for(sub, rng, root) for name, sub in props.items()}
    if kind == "array":
        low = schema.get("minItems", 1)
        high = max(low, schema.get("maxItems", low + 2))
        return [value_for(schema.get("items", {}), rng, root) for _ in range(rng.randint(low, high))]
    if kind == "integer":
        low = schema["minimum"] if "minimum" in schema else schema.get("exclusiveMinimum", -1) + 1
        high = schema["maximum"] if "maximum" in schema else schema.get("exclusiveMaximum", low + 101) - 1
        return rng.randint(int(low), max(int(low), int(high)))
    if kind == "number":
        low = float(schema.get("minimum", 0.0))
        high = float(schema.get("maximum", low + 1.0))
        return round(rng.uniform(low, high), 3)
    if kind == "boolean":
        return rng.random() < 0.5
    if kind == "null":
        return None
    length = max(schema.get("minLength", 0), rng.randint(3, 9))
    text = " ".join(rng.choice(WORDS) for _ in range(length))
    if "maxLength" in schema:
        text = text[: schema["maxLength"]]
    return text


def _schema_of(response_format: dict[str, Any] | None) -> dict[str, Any] | None:
    if not response_format:
        return None
    if response_format.get("type") == "json_schema":
        return (response_format.get("json_schema") or {}).get("schema") or {"type": "object"}
    if response_format.get("type") == "json_object":
        return response_format.get("schema") or {"type": "object", "properties": {"answer": {"type": "string"}}}
    return None


# ---------------------------------------------------------------------------------------------- server


class LoopbackServer:
    def __init__(
        self,
        *,
        latency: float = 0.0,
        max_choices: int | None = None,
        flavour: str = "openai",
        models: list[str] | None = None,
        owned_by: str | None = None,
        port: int = 0,
    ) -> None:
        self.latency = latency
        self.max_choices = max_choices
        self.flavour = flavour
        self.models = models
        self.owned_by = owned_by or {"vllm": "vllm", "llama-cpp": "me", "llama-server": "llamacpp"}.get(flavour, "openai")
        self.port = port
        self.hook: Callable[[Request], Reply | Fault | None] | None = None
        self.latency_fn: Callable[[Request], float] | None = None
        self.in_flight = 0
        self.max_in_flight = 0
        self.requests: list[Request] = []
        self._faults: deque[Fault] = deque()
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    # ------------------------------------------------------------------ public API
    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def count(self) -> int:
        """Chat-completion requests received (answered or faulted)."""
        with self._lock:
            return sum(1 for r in self.requests if r.path.endswith("/chat/completions"))

    def chat_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def inject(
        self, status: int, *, times: int = 1, retry_after: float | None = None, message: str | None = None,
        headers: dict[str, str] | None = None, body: bytes | None = None, action: str | None = None,
        delay: float = 0.0,
    ) -> None:
        """Answer the next `times` chat-completion requests with `status` (and a Retry-After header if given);
        `headers`, `body`, `action` and `delay` as in `Fault`."""
        with self._lock:
            self._faults.extend(
                Fault(status, retry_after, message, headers, body, action, delay) for _ in range(times)
            )

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._faults.clear()
            self.max_in_flight = 0
        self.hook = None
        self.latency_fn = None

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._run, name="loopback-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("loopback server did not start")
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        loop = self._loop

        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            for task in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        assert self._thread is not None
        self._thread.join(5)
        self._loop = None

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ------------------------------------------------------------------ internals
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(512)
        self.port = sock.getsockname()[1]
        self._server = loop.run_until_complete(asyncio.start_server(self._serve, sock=sock, backlog=512))
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raw = writer.get_extra_info("socket")
        if raw is not None:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                line = await reader.readline()
                if not line:
                    return
                method, path, _ = line.decode("latin-1").split(" ", 2)
                headers: dict[str, str] = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    name, _, value = h.decode("latin-1").partition(":")
                    headers[name.strip().lower()] = value.strip()
                size = int(headers.get("content-length", "0") or 0)
                payload = await reader.readexactly(size) if size else b""
                try:
                    body = json.loads(payload) if payload else None
                except json.JSONDecodeError:
                    body = None
                req = Request(method, path.split("?")[0], headers, body)
                with self._lock:
                    self.requests.append(req)
                status, answer, extra = await self._answer(req)
                req.status, req.done = status, time.monotonic()
                if req.action == "reset":  # a TCP reset before any byte of the reply
                    _reset(writer)
                    return
                data = answer if isinstance(answer, bytes) else json.dumps(answer).encode()
                if req.action == "truncate":
                    data = data[: len(data) // 2]
                ctype = "text/plain" if isinstance(answer, bytes) else "application/json"
                extra = {k.lower(): v for k, v in extra.items()}
                head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}",
                        f"content-type: {extra.pop('content-type', ctype)}",
                        f"content-length: {len(data)}", "server: bestofn-loopback"]
                head += [f"{k}: {v}" for k, v in extra.items()]
                blob = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data
                if req.action == "midstream":  # the headers and half the body, then a reset
                    writer.write(blob[: len(blob) - len(data) // 2])
                    await writer.drain()
                    await asyncio.sleep(0.01)
                    _reset(writer)
                    return
                writer.write(blob)
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            return
        finally:
            writer.close()

    async def _answer(self, req: Request) -> tuple[int, Any, dict[str, str]]:
        if self.hook is not None:
            reply = self.hook(req)
            if isinstance(reply, Fault):
                answered = await self._fault(req, reply)
                if answered is not None:
                    return answered
            elif reply is not None:
                return (reply[0], reply[1], reply[2] if len(reply) > 2 else {})  # type: ignore[misc]
        if req.method == "GET" and req.path.endswith("/models"):
            names = self.models or ["loopback"]
            data = [{"id": m, "object": "model", "created": 0, "owned_by": self.owned_by} for m in names]
            return 200, {"object": "list", "data": data}, {}
        if not (req.method == "POST" and req.path.endswith("/chat/completions")):
            return 404, error_body(404, f"no route {req.method} {req.path}"), {}
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            answered = await self._fault(req, fault)
            if answered is not None:
                return answered
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            delay = self.latency_fn(req) if self.latency_fn is not None else self.latency
            if delay:
                await asyncio.sleep(delay)
            return self._chat(req.body or {})
        finally:
            with self._lock:
                self.in_flight -= 1

    async def _fault(self, req: Request, fault: Fault) -> tuple[int, Any, dict[str, str]] | None:
        """Apply a fault; None means: answer normally (a 200 fault with no body, after its delay/action)."""
        req.action = fault.action
        if fault.delay:
            await asyncio.sleep(fault.delay)
        extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else {}
        extra.update(fault.headers or {})
        if fault.body is not None:
            return fault.status, fault.body, extra
        if fault.status == 200:
            if fault.action is None or req.method != "POST" or not req.path.endswith("/chat/completions"):
                return None
            status, answer, more = self._chat(req.body or {})
            return status, answer, {**more, **extra}
        return fault.status, error_body(fault.status, fault.message), extra

    def _chat(self, body: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        model = body.get("model", "loopback")
        if self.models is not None and model not in self.models:
            return 404, error_body(404, f"The model `{model}` does not exist."), {}
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return 400, error_body(400, "'messages' is a required property"), {}
        fmt = body.get("response_format")
        if self.flavour == "llama-cpp" and fmt and fmt.get("type") == "json_schema":
            return 500, {"error": {"message": "Input should be 'text' or 'json_object'", "type": "internal_server_error"}}, {}
        schema = _schema_of(fmt)
        if schema is None and isinstance(body.get("structured_outputs"), dict):  # vLLM's extra field
            schema = body["structured_outputs"].get("json")
        n = int(body.get("n") or 1)
        count = min(n, self.max_choices) if self.max_choices else n
        seed = body.get("seed")
        max_tokens = int(body.get("max_completion_tokens") or body.get("max_tokens") or 64)
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        choices, completion_tokens = [], 0
        for index in range(count):
            rng = _rng(messages, seed, index, model)
            finish = "stop"
            if schema is not None:
                text = json.dumps(value_for(schema, rng))
            else:
                words = [rng.choice(WORDS) for _ in range(rng.randint(6, 14))]
                if len(words) > max_tokens:
                    words, finish = words[:max_tokens], "length"
                text = " ".join(words).capitalize() + ("." if finish == "stop" else "")
            tokens = text.split()
            completion_tokens += len(tokens)
            choice: dict[str, Any] = {"index": index, "message": {"role": "assistant", "content": text},
                                      "finish_reason": finish, "logprobs": None}
            if body.get("logprobs"):
                top = int(body.get("top_logprobs") or 0)
                choice["logprobs"] = {"content": [_token_logprob(t, top, rng) for t in tokens], "refusal": None}
            choices.append(choice)
        return 200, {
            "id": "chatcmpl-" + hashlib.sha1(json.dumps([messages, seed]).encode()).hexdigest()[:12],
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": choices,
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                      "total_tokens": prompt_tokens + completion_tokens},
        }, {}


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close the connection with a TCP reset (SO_LINGER 0), as a crashed server or a middlebox would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _token_logprob(token: str, top: int, rng: random.Random) -> dict[str, Any]:
    lp = -round(rng.uniform(0.01, 2.0), 4)
    alternatives = [{"token": token, "logprob": lp, "bytes": None}]
    alternatives += [{"token": f"{token}~{k}", "logprob": lp - k, "bytes": None} for k in range(1, top)]
    return {"token": token, "logprob": lp, "bytes": None, "top_logprobs": alternatives[:top]}


try:  # the fixture, for test modules that import it (conftest re-exports it)
    import pytest

    @pytest.fixture
    def loopback():
        with LoopbackServer() as srv:
            yield srv

except ImportError:  # pragma: no cover - running as a script without pytest
    pass


def main() -> None:
    import argparse
    import signal

    parser = argparse.ArgumentParser(description="bestofn's loopback OpenAI-compatible server")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--max-choices", type=int, default=None)
    parser.add_argument("--flavour", default="openai")
    args = parser.parse_args()
    srv = LoopbackServer(latency=args.latency, max_choices=args.max_choices, flavour=args.flavour, port=args.port)
    srv.start()
    print(f"LISTENING {srv.base_url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    srv.stop()


if __name__ == "__main__":
    main()
