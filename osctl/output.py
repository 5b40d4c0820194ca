"""Render results as a table, JSON, YAML or CSV; columns chosen with -o.

A table (unless ``human`` is off: ``-p``) shows sizes, rates and times as a
person reads them (osctl.units); JSON, YAML and CSV keep the exact numbers.

Every osctl run pays for its imports before it says a word, so the modules
of the formats other than the table are imported where they are used.
"""

from __future__ import annotations

import io
from typing import Any, Sequence

from .units import human as humanized

FORMATS = ("table", "json", "yaml", "csv")


def cell(value: Any, key: str | None = None, human: bool = False) -> str:
    """One value as text; with ``human``, numbers in the unit ``key`` names."""
    if human:
        value = humanized(key, value)
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, (list, tuple)):
        return ",".join(cell(v, key, human) for v in value) or "-"
    if isinstance(value, dict):
        return ",".join(f"{k}={cell(v, k, human)}" for k, v in value.items())
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def select(rows: list[dict], columns: Sequence[str] | None) -> tuple[list[str], list[dict]]:
    if not columns:
        columns = list(rows[0].keys()) if rows else []
    unknown = [c for c in columns if rows and all(c not in r for r in rows)]
    if unknown:
        known = ", ".join(sorted({k for r in rows for k in r}))
        raise ValueError(f"unknown column(s) {', '.join(unknown)}; known: {known}")
    return list(columns), [{c: r.get(c) for c in columns} for r in rows]


def sort_rows(rows: list[dict], column: str) -> list[dict]:
    """Rows by ``column`` (``-s``), numbers as numbers, missing values last;
    ``-column`` sorts in reverse."""
    reverse = column.startswith("-")
    column = column.lstrip("-")
    if rows and all(column not in r for r in rows):
        select(rows, [column])  # the error naming the known columns
    present = [r for r in rows if r.get(column) is not None]
    missing = [r for r in rows if r.get(column) is None]

    def key(r: dict) -> tuple:
        v = r[column]
        return (0, v, "") if isinstance(v, (int, float)) else (1, 0, cell(v))

    return sorted(present, key=key, reverse=reverse) + missing


def render(data: Any, fmt: str = "table", columns: Sequence[str] | None = None,
           header: bool = True, human: bool = True) -> str:
    """``data`` is a list of rows (dicts) or one object (a dict). ``human``:
    a table shows numbers in units (csv, json and yaml never do)."""
    single = isinstance(data, dict)
    rows = [data] if single else list(data)
    shown: list[str] = []  # the columns of a table or csv
    if columns or fmt in ("table", "csv"):
        shown, rows = select(rows, columns)
    if fmt == "json":
        import json

        return json.dumps(_jsonable(rows[0] if single else rows), indent=2)
    if fmt == "yaml":
        import yaml

        return yaml.safe_dump(_jsonable(rows[0] if single else rows), sort_keys=False).rstrip()
    if fmt == "csv":
        import csv

        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header:
            w.writerow(shown)
        for r in rows:
            w.writerow([cell(r[c]) for c in shown])
        return buf.getvalue().rstrip("\n")
    if single:  # a "show": one key per line
        width = max((len(c) for c in shown), default=0)
        return "\n".join(f"{c.upper():<{width}}  {cell(rows[0][c], c, human)}" for c in shown)
    table = [[cell(r[c], c, human) for c in shown] for r in rows]
    if header:
        table.insert(0, [c.upper() for c in shown])
    widths = [max((len(row[i]) for row in table), default=0) for i in range(len(shown))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in table)
