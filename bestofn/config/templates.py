"""Rubric templates: Jinja2 with StrictUndefined; each template renders a system turn and a user turn.

A template defines `{% block system %}` (the rubric: it never holds candidate text) and `{% block user %}`
(question first, candidate last, so that judge calls of one prompt share a long prefix).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from bestofn.errors import ConfigError
from bestofn.records import Message
from bestofn.config.resources import resolve

_env = jinja2.Environment(
    undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=False, trim_blocks=True
)


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    source: str
    sha256: str

    def render(self, **variables: Any) -> list[Message]:
        template = _compile(self.source)
        context = template.new_context(variables)  # one for both blocks, as Jinja's own render shares it
        turns = []
        for role in ("system", "user"):
            block = template.blocks.get(role)
            if block is None:
                if role == "user":
                    raise ConfigError(f"template {self.path} has no {{% block user %}}")
                continue
            try:
                text = "".join(block(context)).strip()
            except jinja2.UndefinedError as exc:
                raise ConfigError(f"template {self.path}: {exc.message}") from exc
            turns.append(Message(role=role, content=text))
        return turns


@lru_cache(maxsize=256)
def _compile(source: str) -> jinja2.Template:
    return _env.from_string(source)


def load_template(name_or_path: str) -> Template:
    """`correctness.v1` -> prompts/correctness.v1.md.j2; or any path to a .j2 file."""
    path = resolve(name_or_path, "prompts", ".md.j2")
    source = path.read_text(encoding="utf-8")
    try:
        _compile(source)
    except jinja2.TemplateSyntaxError as exc:
        raise ConfigError(f"template {path}, line {exc.lineno}: {exc.message}") from exc
    return Template(name=name_or_path, path=path, source=source, sha256=hashlib.sha256(source.encode()).hexdigest())
