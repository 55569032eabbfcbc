"""The report as one self-contained HTML page: inline CSS, PNGs as data: URIs, no script, no external URL.

The page is the Jinja2 template report.html.j2 beside this file, rendered with autoescape on, so every value
that came from the data (panel and judge names, subsets, notes, flags) is escaped."""

from __future__ import annotations

import base64
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

BESIDE = ("humans", "alpaca_eval_gpt4", "longest")  # published judges shown in the summary table


def _pct(x: float | None, digits: int = 0) -> str:
    return "–" if x is None else f"{x * 100:.{digits}f}%"


def _num(x: float | None, fmt: str = "{:,.0f}") -> str:
    return "–" if x is None else fmt.format(x)


def _signed(x: float) -> str:
    return f"{x * 100:+.1f}"


_ENV = Environment(loader=PackageLoader("bestofn.apps.ab", "."), autoescape=True, undefined=StrictUndefined,
                   trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
_ENV.filters.update(pct=_pct, num=_num, signed=_signed)


def render_html(figures: dict[str, Any], images: dict[str, bytes]) -> str:
    ranked = sorted(figures["published"]["rows"], key=lambda r: -(r["accuracy"] or 0))
    return _ENV.get_template("report.html.j2").render(
        figures=figures, ranked=ranked, beside=BESIDE,
        images={name: base64.b64encode(png).decode("ascii") for name, png in images.items()})
