"""Public import path `bestofn.export` (`bestofn.export.to_dataset`); the code lives in bestofn/sinks/export.py."""

from bestofn.sinks.export import read_rows, rows_for, to_dataset, write_rows  # noqa: F401
