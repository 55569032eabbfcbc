"""`bestofn serve`: an OpenAI-compatible HTTP server (FastAPI + uvicorn) that answers with the best of n.

    POST /v1/chat/completions   best-of-n; `stream: true` sends the chosen answer as SSE chunks once chosen
    GET  /v1/models             the one model served (the --model spec)
    GET  /health                liveness (no token needed)

Per request, `extra_body={"bestofn": {"n": 8, "panel": "default", "accept_threshold": 0.8}}` (a top-level
`bestofn` object in the JSON body) sets the candidates sampled, the panel (a built-in one, or the server's own
--panel) and early stop; the standard `n` keeps its OpenAI meaning, the number of choices returned (the top of
the ranking). The response's `bestofn` field holds the Selection (in a stream: the last chunk's). The request's
`model` is echoed, but the generator is the server's --model: a client cannot point the server elsewhere.

Security: binds 127.0.0.1 by default; refuses to listen on any other address without a bearer token
(`--token` or BESTOFN_TOKEN), and checks the token on every endpoint but /health whenever one is set. Bodies
over `max_body_bytes` get a 413; bodies that are not JSON a 400; bodies of the wrong shape a 422; parameters
best-of-n cannot honour (tools, response_format, stop, logprobs, ...) a 400 naming them. Errors use OpenAI's
`{"error": {"message", "type", "param", "code"}}` shape, so the SDKs raise them with the message. Logs are one
JSON object per line with the request id (`x-request-id`, echoed or made), never headers or bodies, and a
redaction pass removes the token, any *_API_KEY value from the environment and anything shaped like a key.
"""


import asyncio
import ipaddress
import json
import logging
import os
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bestofn.apps.options import BestOfN, BestOfNOptions, RequestOptions
from bestofn.apps.serve.chat_wire import chat_chunks, chat_completion, check_params, openai_messages, sse
from bestofn.apps.serve.gate import configure_logging
from bestofn.backends.base import Backend
from bestofn.errors import AuthError, BackendError, BestofnError, ConfigError, MissingExtraError, RateLimitError
from bestofn.pipeline.select import MAX_N
from bestofn.records import Message, Selection
from bestofn.redact import Redactor, secrets_from_env

DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8088
DEFAULT_MAX_BODY = 1024 * 1024
KEEPALIVE_S = 10.0  # a streaming client sees an SSE comment this often while the panel deliberates
log = logging.getLogger("bestofn.serve")


class ServeConfig(BestOfNOptions):
    """The server's best-of-n options (the defaults of every request; bestofn.apps.options, shared with
    `bestofn.wrap`), its generator and its own settings."""

    model: str | Backend = "local"
    token: str | None = Field(default=None, repr=False)
    max_body_bytes: int = Field(default=DEFAULT_MAX_BODY, ge=1)
    keepalive_s: float = Field(default=KEEPALIVE_S, gt=0)
    secrets: tuple[str, ...] = Field(default=(), repr=False)


# ------------------------------------------------------------------------------------------------ security


def is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # any other host name may resolve off the machine


def check_bind(host: str, token: str | None) -> None:
    if not is_loopback(host) and not token:
        raise ConfigError(f"refusing to listen on {host} without a bearer token: pass --token or set "
                          "BESTOFN_TOKEN (clients send it as their API key), or bind 127.0.0.1")


# ------------------------------------------------------------------------------------------------ errors


class APIError(Exception):
    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self, redact: Redactor) -> dict[str, Any]:
        return {"error": {"message": redact(self.message), "type": self.type, "param": self.param, "code": self.code}}


def as_api_error(exc: BaseException, request_id: str) -> APIError:
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, RateLimitError):
        return APIError(429, f"upstream rate limit: {exc}", type="rate_limit_error", code="upstream_rate_limited")
    if isinstance(exc, AuthError):
        return APIError(502, f"the server's upstream model refused its credentials: {exc}", type="upstream_error")
    if isinstance(exc, BackendError):
        return APIError(502, f"upstream model failed: {exc}", type="upstream_error")
    if isinstance(exc, (ConfigError, MissingExtraError)):
        return APIError(400, str(exc), param=getattr(exc, "option", None))
    if isinstance(exc, BestofnError):
        return APIError(500, str(exc), type="server_error")
    return APIError(500, f"internal error (request id {request_id})", type="server_error")


def _validation_message(exc: ValidationError) -> tuple[str, str | None]:
    parts, param = [], None
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e["loc"]) or "body"
        param = param or where
        parts.append(f"{where}: {e['msg']}")
    return "invalid request: " + "; ".join(parts), param


# ------------------------------------------------------------------------------------------------ requests


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="allow")
    include_usage: bool = False


class ChatRequest(BaseModel):
    """The fields of a Chat Completions request that best-of-n uses; others are checked by `check_params`."""

    model_config = ConfigDict(extra="allow")

    model: str | None = None
    messages: list[dict[str, Any]] = Field(min_length=1)
    n: int = Field(default=1, ge=1, le=MAX_N)
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    bestofn: RequestOptions | None = None


class ChatServer:
    """What the endpoints share: the config, its best-of-n (the panels a request may name, the pair sink), the
    redactor."""

    def __init__(self, config: ServeConfig) -> None:
        self.config = config
        self.bestofn = BestOfN(config, any_panel=False)  # a client may name a built-in panel or the server's own
        self.panel = config.panel
        self.model_id = config.model if isinstance(config.model, str) else config.model.spec
        self.redact = Redactor(config.secrets + ((config.token,) if config.token else ()))

    def parse(self, raw: bytes) -> ChatRequest:
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise APIError(400, f"request body must be a JSON object, got {type(data).__name__}")
        try:
            request = ChatRequest.model_validate(data)
        except ValidationError as exc:
            message, param = _validation_message(exc)
            raise APIError(422, message, param=param) from None
        try:
            check_params({k: v for k, v in data.items() if k not in ChatRequest.model_fields}, "openai")
        except ConfigError as exc:
            raise APIError(400, str(exc)) from None
        return request

    def prepare(self, request: ChatRequest) -> tuple[list[Message], BestOfNOptions]:
        """The messages and this request's options, checked before any model is called (so a stream's errors are
        4xx too)."""
        try:
            messages = openai_messages(request.messages)
        except ConfigError as exc:
            raise APIError(400, str(exc), param="messages") from None
        try:
            options = self.bestofn.for_request(
                request.bestofn, choices=request.n, seed=request.seed, temperature=request.temperature,
                max_tokens=request.max_completion_tokens or request.max_tokens)
        except ConfigError as exc:
            raise APIError(400, str(exc), param=getattr(exc, "option", None)) from None
        return messages, options

    async def select(self, plan: tuple[list[Message], BestOfNOptions], state: dict[str, Any]) -> Selection:
        messages, options = plan
        state.update(n=options.n, panel=options.panel.name, seed=options.seed)
        selection = await self.bestofn.select(messages, self.config.model, options)
        best = selection.best
        state.update(candidates=len(selection.candidates), calls=selection.cost.calls,
                     tokens=selection.cost.prompt_tokens + selection.cost.completion_tokens,
                     best_score=selection.scores.get(best.id) if best else None, seconds=selection.cost.seconds)
        return selection


def with_selection(payload: dict[str, Any], selection: Selection) -> bytes:
    """`payload` as JSON with the Selection in its `bestofn` field (pydantic's own serializer: fast)."""
    head = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    return f'{head[:-1]},"bestofn":{selection.model_dump_json()}}}'.encode()


# ------------------------------------------------------------------------------------------------ the app


def create_app(config: ServeConfig | None = None, **options: Any) -> Any:
    """The FastAPI app. `create_app(model="vllm:m", base_url=..., token=...)` or `create_app(ServeConfig(...))`."""
    try:
        from fastapi import FastAPI, Request
        from fastapi.responses import JSONResponse, Response, StreamingResponse
        from starlette.exceptions import HTTPException
    except ModuleNotFoundError as exc:
        raise MissingExtraError("bestofn serve", "server", exc.name or "fastapi") from exc
    from bestofn.apps.serve.gate import Gate

    config = config or ServeConfig(**options)
    server = ChatServer(config)
    app = FastAPI(title="bestofn", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.server = server

    def error_response(err: APIError) -> JSONResponse:
        return JSONResponse(err.body(server.redact), status_code=err.status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(APIError(exc.status_code, str(exc.detail), code="not_found" if exc.status_code == 404 else None))

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": server.model_id, "object": "model", "created": 0, "owned_by": "bestofn"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        state: dict[str, Any] = request.scope.setdefault("state", {}).setdefault("log_fields", {})
        rid = request.scope["state"]["request_id"]
        try:
            body = server.parse(await request.body())
            plan = server.prepare(body)
        except APIError as err:
            return error_response(err)
        model = body.model or server.model_id
        if not body.stream:
            try:
                selection = await server.select(plan, state)
            except Exception as exc:
                err = as_api_error(exc, rid)
                _log_failure(exc, err, rid)
                return error_response(err)
            return Response(with_selection(chat_completion(selection, model, body.n), selection),
                            media_type="application/json")
        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        return StreamingResponse(_events(server, plan, body.n, model, include_usage, state, rid),
                                 media_type="text/event-stream", headers={"cache-control": "no-cache"})

    app.add_middleware(Gate, token=config.token, max_body_bytes=config.max_body_bytes, redact=server.redact)
    return app


def _log_failure(exc: BaseException, err: APIError, rid: str) -> None:
    fields = {"fields": {"request_id": rid, "status": err.status}}
    if err.status >= 500 and not isinstance(exc, BestofnError):
        log.error("request failed", exc_info=exc, extra=fields)
    else:
        log.warning(f"request failed: {err.message}", extra=fields)


async def _events(server: ChatServer, plan: tuple[list[Message], BestOfNOptions], choices: int, model: str,
                  include_usage: bool, state: dict[str, Any], rid: str) -> Any:
    """SSE: keep-alive comments while the panel deliberates, then the chosen answer's chunks and [DONE]."""
    task = asyncio.ensure_future(server.select(plan, state))
    try:
        while not (await asyncio.wait({task}, timeout=server.config.keepalive_s))[0]:
            yield b": bestofn is judging\n\n"
        try:
            selection = task.result()
        except Exception as exc:
            err = as_api_error(exc, rid)
            _log_failure(exc, err, rid)
            yield sse(err.body(server.redact))
            yield sse("[DONE]")
            return
        chunks = list(chat_chunks(selection, model, choices, include_usage=include_usage))
        for chunk in chunks[:-1]:
            yield sse(chunk)
        yield b"data: " + with_selection(chunks[-1], selection) + b"\n\n"  # the last chunk carries the Selection
        yield sse("[DONE]")
    finally:
        if not task.done():  # the client went away: stop sampling and judging
            task.cancel()


# ------------------------------------------------------------------------------------------------ runner


def run(*, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, token: str | None = None, log_level: str = "info",
        **options: Any) -> None:
    """Check the bind address against the token, then serve until interrupted."""
    token = token or os.environ.get("BESTOFN_TOKEN") or None
    check_bind(host, token)
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        raise MissingExtraError("bestofn serve", "server", "uvicorn") from exc
    secrets = secrets_from_env()
    configure_logging(log_level, secrets + ((token,) if token else ()))
    app = create_app(ServeConfig(token=token, secrets=secrets, **options))
    log.info("serving", extra={"fields": {"host": host, "port": port, "model": app.state.server.model_id,
                                          "panel": app.state.server.panel.name, "auth": bool(token)}})
    uvicorn.run(app, host=host, port=port, log_config=None, access_log=False, log_level=log_level,
                backlog=2048, timeout_keep_alive=30)


__all__ = ["ServeConfig", "check_bind", "create_app", "is_loopback", "run"]
