"""SDK exceptions -> bestofn's typed errors. The openai and anthropic SDKs share their exception names, so one
translation serves both: pass the SDK module."""

from __future__ import annotations

from types import ModuleType

from bestofn.errors import AuthError, BackendError, RateLimitError, UnknownModelError


def typed_error(sdk: ModuleType, exc: Exception, backend: str, model: str) -> Exception:
    status = getattr(exc, "status_code", None)
    detail = getattr(exc, "message", None) or str(exc)
    if isinstance(exc, (sdk.AuthenticationError, sdk.PermissionDeniedError)):
        return AuthError(backend, f"authentication failed ({status}): {detail}; check the API key")
    if isinstance(exc, sdk.RateLimitError):
        return RateLimitError(backend, f"rate limited (429) and the retries are used up: {detail}")
    if isinstance(exc, sdk.NotFoundError):
        return UnknownModelError(backend, f"unknown model {model!r} (404): {detail}")
    if status == 529:
        return BackendError(backend, f"overloaded (529) and the retries are used up: {detail}")
    if isinstance(exc, sdk.APITimeoutError):
        return BackendError(backend, f"request timed out: {detail}")
    if isinstance(exc, sdk.APIConnectionError):
        return BackendError(backend, f"cannot connect: {detail}")
    if isinstance(exc, sdk.APIStatusError):
        return BackendError(backend, f"HTTP {status}: {detail}")
    return BackendError(backend, f"{type(exc).__name__}: {detail}")
