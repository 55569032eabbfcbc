"""`bestofn doctor [--json]`: the command (registered in bestofn/apps/cli/main.py); the checks are in
bestofn/apps/doctor.py."""

from __future__ import annotations

import sys

import typer

from bestofn.apps.cli.options import Json, with_help
from bestofn.apps.doctor import Check, format_line, run_checks


def _print(check: Check) -> None:
    sys.stdout.write(format_line(check) + "\n")
    sys.stdout.flush()


def doctor(as_json: with_help(Json, "Print the checks as one JSON object.") = False) -> None:
    """Check the setup, one line per check (ok / warn / fail, with the fix); exit 1 when a check fails."""
    report = run_checks(on_check=None if as_json else _print)
    if as_json:
        sys.stdout.write(report.model_dump_json(indent=1) + "\n")
    if not report.ok:
        raise typer.Exit(1)
