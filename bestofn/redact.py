"""Keys out of anything bestofn prints or logs: the values of *_API_KEY / *_TOKEN / *_SECRET variables and
strings shaped like keys (`sk-...`, `Bearer ...`). Error messages (bestofn.errors), the server's JSON logs and
`bestofn doctor` all pass through one `Redactor`."""

from __future__ import annotations

import os
import re

KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{8,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,})")


def secrets_from_env() -> tuple[str, ...]:
    return tuple(v for k, v in os.environ.items()
                 if re.search(r"(API_KEY|TOKEN|SECRET)$", k) and len(v) >= 8)


class Redactor:
    def __init__(self, secrets: tuple[str, ...]) -> None:
        self.secrets = tuple(sorted({s for s in secrets if s}, key=len, reverse=True))

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "[redacted]")
        return KEY_SHAPES.sub("[redacted]", text)
