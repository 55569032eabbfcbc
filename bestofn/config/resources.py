"""Find built-in panels (`judges/*.toml`) and rubric templates (`prompts/*.md.j2`).

A wheel carries them in `bestofn/_builtin/`; an editable install or a source checkout uses the top-level
folders. A user's own panel or rubric is any path; a bare name means a built-in one.
"""

from __future__ import annotations

from pathlib import Path

from bestofn.errors import ConfigError

_PACKAGE = Path(__file__).resolve().parents[1]  # the bestofn package folder


def builtin_dir(kind: str) -> Path:
    """`kind` is "judges" or "prompts"."""
    for candidate in (_PACKAGE / "_builtin" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise ConfigError(f"bestofn's built-in {kind}/ folder is missing from this install")


def resolve(name_or_path: str, kind: str, suffix: str) -> Path:
    """A path that exists, or the built-in file `<name><suffix>` in the `kind` folder."""
    path = Path(name_or_path).expanduser()
    if path.suffix and path.is_file():
        return path
    builtin = builtin_dir(kind) / f"{name_or_path}{suffix}"
    if builtin.is_file():
        return builtin
    known = ", ".join(sorted(p.name.removesuffix(suffix) for p in builtin_dir(kind).glob(f"*{suffix}")))
    what = "panel" if kind == "judges" else "rubric"
    raise ConfigError(f"unknown {what} {name_or_path!r}: not a file, and not a built-in one ({known})")
