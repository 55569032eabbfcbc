"""The server's front door: one pure ASGI middleware (request ids, the bearer token, the body size limit, one
structured access-log line per request, never a header or a body) and the JSON logs' redaction."""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
import uuid
from typing import Any, Callable

from bestofn.redact import Redactor

log = logging.getLogger("bestofn.serve")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, event, the record's `fields`, redacted as a whole."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__()
        self.redact = redact

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {"ts": round(record.created, 3), "level": record.levelname.lower(),
                               "logger": record.name, "event": record.getMessage()}
        out.update(getattr(record, "fields", {}))
        if record.exc_info:
            out["error"] = self.formatException(record.exc_info)
        return self.redact(json.dumps(out, default=str))


def configure_logging(level: str, secrets: tuple[str, ...]) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(Redactor(secrets)))
    for name in ("bestofn", "uvicorn", "uvicorn.error"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(level.upper())
        logger.propagate = False


def new_request_id(incoming: str | None) -> str:
    if incoming and re.fullmatch(r"[A-Za-z0-9._\-]{1,64}", incoming):
        return incoming
    return uuid.uuid4().hex


class BodyTooLarge(Exception):
    pass


class Gate:
    def __init__(self, app: Any, *, token: str | None, max_body_bytes: int, redact: Callable[[str], str]) -> None:
        self.app, self.token, self.max_body, self.redact = app, token, max_body_bytes, redact

    def _authorized(self, header: str | None) -> bool:
        if not header or not header[:7].lower() == "bearer ":
            return False
        assert self.token is not None
        return hmac.compare_digest(header[7:].strip().encode(), self.token.encode())

    async def _reply(self, send: Any, status: int, message: str, *, type: str = "invalid_request_error",
                     code: str | None = None, headers: list[tuple[bytes, bytes]] | None = None) -> None:
        body = json.dumps({"error": {"message": self.redact(message), "type": type, "param": None, "code": code}}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                *(headers or [])]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        rid = new_request_id(headers.get("x-request-id"))
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        fields: dict[str, Any] = state.setdefault("log_fields", {})
        started, status = time.perf_counter(), [0]

        async def send_with_id(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message = {**message, "headers": [*message.get("headers", []), (b"x-request-id", rid.encode())]}
            await send(message)

        try:
            if self.token and scope["path"] != "/health" and not self._authorized(headers.get("authorization")):
                await self._reply(send_with_id, 401, "missing or invalid bearer token: send the server's token as "
                                  "the API key (Authorization: Bearer ...)", code="invalid_api_key",
                                  headers=[(b"www-authenticate", b"Bearer")])
                return
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                await self._reply(send_with_id, 413, f"request body too large: {length} bytes; the limit is "
                                  f"{self.max_body} bytes", code="body_too_large")
                return
            received = 0

            async def counted() -> dict[str, Any]:
                nonlocal received
                message = await receive()
                if message["type"] == "http.request":
                    received += len(message.get("body", b""))
                    if received > self.max_body:
                        raise BodyTooLarge
                return message

            try:
                await self.app(scope, counted, send_with_id)
            except BodyTooLarge:
                if not status[0]:
                    await self._reply(send_with_id, 413, f"request body too large: over the limit of "
                                      f"{self.max_body} bytes", code="body_too_large")
        finally:
            log.info("request", extra={"fields": {
                "request_id": rid, "method": scope.get("method"), "path": scope.get("path"), "status": status[0],
                "ms": round((time.perf_counter() - started) * 1000, 1), **fields}})
