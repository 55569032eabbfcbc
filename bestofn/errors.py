"""Typed errors. Each one names what went wrong in one line; the CLI prints that line."""

from __future__ import annotations

from bestofn.redact import Redactor, secrets_from_env


class BestofnError(Exception):
    """Base of every error bestofn raises on purpose."""


class ConfigError(BestofnError):
    """A bad option, panel, rubric or input file."""


class MissingExtraError(BestofnError):
    def __init__(self, what: str, extra: str, module: str):
        super().__init__(f"{what} needs the '{module}' package: pip install 'bestofn[{extra}]'")
        self.extra = extra


class BackendError(BestofnError):
    """A backend call failed for good (after the SDK's own retries)."""

    def __init__(self, backend: str, message: str):
        # A server may echo the key it was sent (`Incorrect API key provided: Bearer sk-...`); this message goes
        # to stderr, into verdict reasons and build reports: keys (*_API_KEY/TOKEN/SECRET values, key shapes) out.
        super().__init__(f"{backend}: {Redactor(secrets_from_env())(message)}")
        self.backend = backend


class AuthError(BackendError):
    pass


class RateLimitError(BackendError):
    pass


class UnknownModelError(BackendError):
    pass
