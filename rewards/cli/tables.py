"""Plain-text tables for the terminal: the CLI's and the demo's output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    return str(value)


def render(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> str:
    """Columns aligned, numbers right-aligned with thousands separators."""
    rows = [list(row) for row in rows]
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row)]
    numeric = [all(isinstance(row[i], (int, float)) and not isinstance(row[i], bool)
                   for row in rows if row[i] is not None) and bool(rows) for i in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(value.rjust(width) if is_number else value.ljust(width)
                         for value, width, is_number in zip(values, widths, numeric)).rstrip()

    out = [title] if title else []
    out.append(line(headers))
    out.append("  ".join("-" * width for width in widths))
    out.extend(line(row) for row in cells)
    if not cells:
        out.append("(none)")
    return "\n".join(out)
