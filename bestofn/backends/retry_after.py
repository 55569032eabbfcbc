"""Cap how long a server's Retry-After can make an SDK sleep.

The SDKs' own retries are the one retry loop, and they honour Retry-After (`retry-after-ms`, `retry-after` in
seconds or as an HTTP date). What they do with absurd values differs: the openai SDK refuses to retry past
120 s (the call fails at once), the anthropic SDK sleeps for up to ~50 days. A response hook on the SDK's HTTP
client rewrites the header before the SDK reads it:

- a wait over the cap (`BESTOFN_MAX_RETRY_AFTER` seconds, default 60) becomes the cap: the retry happens, late;
- a negative, zero, non-finite or unreadable wait is dropped: the SDK's own exponential backoff applies;
- anything else is passed on as seconds (`retry-after`), milliseconds folded in.

`capped_http_client(sdk)` is the SDK's default async HTTP client with the hook; backends that make their own
client pass it as `http_client=`. A client the caller passes in is used as is.
"""

from __future__ import annotations

import email.utils
import math
import os
import ssl
import time
from functools import lru_cache
from typing import Any

from bestofn.errors import ConfigError

DEFAULT_MAX_RETRY_AFTER = 60.0


def max_retry_after() -> float:
    raw = os.environ.get("BESTOFN_MAX_RETRY_AFTER", "").strip()
    if not raw:
        return DEFAULT_MAX_RETRY_AFTER
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"BESTOFN_MAX_RETRY_AFTER must be a number of seconds, got {raw!r}") from None
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"BESTOFN_MAX_RETRY_AFTER must be a finite number >= 0, got {raw!r}")
    return value


def parse_retry_after(headers: Any, now: float | None = None) -> float | None:
    """Seconds to wait from `retry-after-ms`, else `retry-after` (seconds or an HTTP date); None if absent.
    Unreadable values give NaN (present but meaningless)."""
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            return float(ms) / 1000
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None if ms is None else math.nan
    try:
        return float(value)
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return math.nan
        return float(email.utils.mktime_tz(parsed) - (time.time() if now is None else now))
    except (TypeError, ValueError, OverflowError):
        return math.nan


def capped(seconds: float | None, cap: float) -> float | None:
    """The wait to pass on: None (drop the header) for absent, unreadable, non-positive or non-finite waits."""
    if seconds is None or math.isnan(seconds) or seconds <= 0:
        return None
    return min(seconds, cap)  # +inf is capped too


async def cap_retry_after(response: Any) -> None:
    """An httpx response hook: rewrite Retry-After in place (see the module's docstring)."""
    headers = response.headers
    if "retry-after" not in headers and "retry-after-ms" not in headers:
        return
    wait = capped(parse_retry_after(headers), max_retry_after())
    for name in ("retry-after-ms", "retry-after"):
        if name in headers:
            del headers[name]
    if wait is not None:
        headers["retry-after"] = f"{wait:.3f}"


@lru_cache(maxsize=8)
def _tls_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The HTTP client's default TLS context (SSL_CERT_FILE / SSL_CERT_DIR honoured, as the key says)."""
    import httpx2  # the SDKs' HTTP library

    return httpx2.create_ssl_context()


def capped_http_client(sdk: Any) -> Any:
    """The SDK's (`openai` or `anthropic` module) default async HTTP client, with the Retry-After cap. Its TLS
    context is made once per process and shared: loading the CA certificates takes tens of milliseconds (on a
    busy machine, half a second), and a client is made per backend and event loop (`select` runs one per call)."""
    tls = _tls_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
    return sdk.DefaultAsyncHttpxClient(verify=tls, event_hooks={"response": [cap_retry_after]})
