"""The best-of-n options behind both `bestofn.wrap` and `bestofn serve`, and the one road from a chat request
to `aselect`.

- `BestOfNOptions`: n, panel, judge_model, base_url, seed (default 0), max_tokens, judge_max_tokens,
  temperature, accept_threshold, wave_size, strategy, pair_margin, cache, log. Checked when made: a bad
  value is an `OptionError` (a ConfigError) naming the option. `wrap(client, **options)` makes one, and
  `ServeConfig` is one (plus the server's own settings).
- `RequestOptions`: what one request may override, `extra_body={"bestofn": {"n", "panel", "accept_threshold",
  "wave_size", "strategy"}}` (serve and wrap alike).
- `BestOfN(options)`: a wrapper's or a server's best-of-n. `for_request(...)` merges, in this order, the
  defaults, the request's own seed / max_tokens / temperature and its `bestofn` overrides into the call's
  checked `BestOfNOptions`; `select(messages, model, options)` is the one call into `aselect` (its pairs go
  to the log from a background thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from bestofn.apps.serve.background import BackgroundSink
from bestofn.backends.base import Backend
from bestofn.backends.cache import Cache
from bestofn.config.panel import Panel, builtin_panels, load_panel
from bestofn.errors import ConfigError
from bestofn.pipeline.select import DEFAULT_MAX_TOKENS, DEFAULT_TEMPERATURE, MAX_N, aselect, resolve_panel
from bestofn.ranking.pairs import STRATEGIES
from bestofn.records import Message, Selection

DEFAULT_N = 4
Strategy = Literal[STRATEGIES]  # type: ignore[valid-type]


class OptionError(ConfigError):
    """A bad best-of-n option; `option` names it (a CLI line, an HTTP error's `param`)."""

    def __init__(self, option: str, message: str) -> None:
        super().__init__(f"{option}: {message}" if option else message)
        self.option = option or None


def option_error(exc: ValidationError, where: str = "") -> OptionError:
    """pydantic's errors as one line that names each bad option (`where` prefixes the names)."""
    named = []
    for e in exc.errors()[:5]:
        name = ".".join(str(p) for p in (where, *e["loc"]) if p != "")
        got = f", got {e['input']!r}" if e["type"] not in ("missing", "extra_forbidden") and "input" in e else ""
        named.append((name, f"{e['msg']}{got}"))
    (option, message), rest = named[0], named[1:]
    return OptionError(option, "; ".join([message, *(f"{n}: {m}" for n, m in rest)]))


class RequestOptions(BaseModel):
    """Per-request options: `extra_body={"bestofn": {...}}` (serve and wrap alike)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n: int | None = Field(default=None, ge=1, le=MAX_N, description="candidates to sample")
    panel: str | None = Field(default=None, description="a panel name the server or wrapper allows")
    accept_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    wave_size: int | None = Field(default=None, ge=1, le=MAX_N)
    strategy: Strategy | None = None


class BestOfNOptions(BaseModel):
    """The best-of-n options of one wrapper or server (its defaults), or of one call (merged)."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    n: int = Field(default=DEFAULT_N, ge=1, le=MAX_N, description="candidates sampled per call")
    panel: Panel = Field(default="default", validate_default=True)  # type: ignore[assignment]
    judge_model: str | Backend | None = None
    base_url: str | None = None
    seed: int = 0  # for each call that gives none (DESIGN part B: the seed defaults to 0)
    max_tokens: int = Field(default=DEFAULT_MAX_TOKENS, ge=1)
    judge_max_tokens: int | None = Field(default=None, ge=1)
    temperature: float = Field(default=DEFAULT_TEMPERATURE, ge=0.0, le=2.0)
    accept_threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    wave_size: int | None = Field(default=None, ge=1, le=MAX_N)
    strategy: Strategy = "best-worst"
    pair_margin: float | None = Field(default=None, ge=0.0, le=1.0)
    cache: Cache | str | Path | bool | None = None
    log: Any = Field(default=None, repr=False)  # preference pairs: a JSONL path or an object with write(pairs)

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise option_error(exc) from None

    @field_validator("panel", mode="before")
    @classmethod
    def _panel(cls, value: Any) -> Any:
        return resolve_panel(value) if isinstance(value, (str, Path)) else value

    def shared(self) -> dict[str, Any]:
        """The best-of-n options alone (a subclass's own settings left out), unconverted."""
        return {name: getattr(self, name) for name in BestOfNOptions.model_fields}


class BestOfN:
    """A wrapper's or a server's best-of-n: its options, the panels a request may name (`any_panel`: any
    built-in name or path, as `wrap` allows its own caller; else the built-in ones and the configured one, as a
    server allows its clients), the pair log and the one call into `aselect`."""

    def __init__(self, options: BestOfNOptions, *, any_panel: bool) -> None:
        self.options, self.any_panel = options, any_panel
        self.sink = BackgroundSink(options.log) if options.log is not None else None
        self._panels: dict[str, Panel] = {options.panel.name: options.panel}

    def panel_for(self, name: str | None) -> Panel:
        if name is None:
            return self.options.panel
        if name not in self._panels:
            if not self.any_panel and name not in builtin_panels():
                allowed = ", ".join(sorted({self.options.panel.name, *builtin_panels()}))
                raise OptionError("bestofn.panel", f"unknown panel {name!r}; this server allows: {allowed}")
            self._panels[name] = load_panel(name)
        return self._panels[name]

    def for_request(self, overrides: RequestOptions | Mapping[str, Any] | None = None, *, choices: int = 1,
                    seed: int | None = None, max_tokens: int | None = None, temperature: float | None = None,
                    where: str = "bestofn") -> BestOfNOptions:
        """This call's options: the defaults, then the request's own parameters, then its `bestofn` object
        (`where` names that object in errors). `choices` is how many answers the request wants back."""
        if not isinstance(overrides, RequestOptions):
            try:
                overrides = RequestOptions.model_validate(overrides or {})
            except ValidationError as exc:
                raise option_error(exc, where) from None
        defaults = self.options
        n = overrides.n if overrides.n is not None else max(defaults.n, choices)
        if choices > n:
            raise OptionError("n", f"{choices} choices asked for, but only {n} candidates are sampled; raise {where}.n")
        given = {"seed": seed, "max_tokens": max_tokens, "temperature": temperature,
                 "accept_threshold": overrides.accept_threshold, "wave_size": overrides.wave_size,
                 "strategy": overrides.strategy}
        return BestOfNOptions(**{**defaults.shared(), **{k: v for k, v in given.items() if v is not None},
                                 "n": n, "panel": self.panel_for(overrides.panel)})

    async def select(self, messages: list[Message], model: str | Backend, options: BestOfNOptions) -> Selection:
        shared = options.shared()
        del shared["log"]  # written here, off the request's path, not by aselect
        selection = await aselect(messages, model=model, **shared)
        if self.sink is not None:
            self.sink.submit(selection.pairs)
        return selection


__all__ = ["DEFAULT_N", "BestOfN", "BestOfNOptions", "OptionError", "RequestOptions", "option_error"]
