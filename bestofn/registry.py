"""Named plug-ins: one mechanism behind the backends, the judge kinds and the verifier checks.

A `Registry` maps names to targets. Built-ins are lazy `"module:attr"` strings (imported on first use);
`register(name, target)` adds one at run time (a string or the object itself); third parties add theirs
through the registry's entry point group, with no change to bestofn:

    # a third party's pyproject.toml
    [project.entry-points."bestofn.backends"]      # or "bestofn.judges", "bestofn.verifiers"
    mine = "my_package.module:MyBackend"

Built-in and registered names win over an entry point of the same name. An unknown name is one ConfigError
naming what was asked for and every known name.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from bestofn.errors import ConfigError

T = TypeVar("T")

_by_group: dict[str, Registry[Any]] = {}


class Registry(Generic[T]):
    """`Registry("backend", "bestofn.backends", {"local": "bestofn.backends.local:LocalBackend"})`:
    `registry[name]` (or `.load(name, where=...)`) is the target, `name in registry`, `registry.names()`."""

    def __init__(self, what: str, group: str, builtins: dict[str, str | T]) -> None:
        self.what, self.group = what, group
        self._targets: dict[str, str | T] = dict(builtins)
        self._loaded: dict[str, T] = {}
        _by_group[group] = self

    def register(self, name: str, target: str | T) -> None:
        """Add or replace `name`: a `"module:attr"` string (imported on first use) or the object itself."""
        self._targets[name] = target
        self._loaded.pop(name, None)

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self) -> list[str]:
        """Every known name, built-in, registered and third parties', sorted."""
        return sorted({*self._targets, *self._entry_points()})

    def __contains__(self, name: object) -> bool:
        return name in self._targets or name in self._entry_points()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __getitem__(self, name: str) -> T:
        return self.load(name)

    def load(self, name: str, where: str = "") -> T:
        """The target of `name`, imported if need be; `where` (e.g. "panel 'p': ") starts the error."""
        if name in self._loaded:
            return self._loaded[name]
        if name in self._targets:
            target = self._targets[name]
            found = _import(target, f"{where}{self.what} {name!r}") if isinstance(target, str) else target
        else:
            ep = self._entry_points().get(name)
            if ep is None:
                raise ConfigError(f"{where}unknown {self.what} {name!r}; known: {', '.join(self.names())}")
            found = _import(ep.value, f"{where}{self.what} {name!r} (entry point group {self.group})")
        self._loaded[name] = found
        return found


def _import(target: str, what: str) -> Any:
    """`module:attr` (attr may be dotted), or a ConfigError when that module or attribute is not there. A
    module missing deeper down (an optional SDK the target imports) is the target's own error to give."""
    module_name, _, attr = target.partition(":")
    try:
        found: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise
        raise ConfigError(f"{what} names {target!r}, which cannot be imported: {exc}") from exc
    for part in attr.split(".") if attr else ():
        try:
            found = getattr(found, part)
        except AttributeError:
            raise ConfigError(f"{what} names {target!r}, which has no {part!r}") from None
    return found


def names_in(group: str) -> list[str]:
    """Every name of an entry point group: its Registry's once one exists, else the third parties' alone
    (for checks that run below the layer that holds the registry, e.g. a panel's judge kinds)."""
    registry = _by_group.get(group)
    return registry.names() if registry is not None else sorted({ep.name for ep in entry_points(group=group)})
