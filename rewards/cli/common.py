"""What the `rewards` commands share: their two errors, the read connection, printing, argument types.

It imports no command module, so every command module may import it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from typing import Any

from sqlalchemy import Connection

from rewards import db, queries
from rewards.cli.tables import render


class CliError(Exception):
    """A problem the user can fix; printed as one line, exit code 2."""


class NotFound(Exception):
    """What was asked about does not exist; printed as one line, exit code 1."""


@contextmanager
def reading() -> Iterator[Connection]:
    """A connection for read-side queries (the read engine); an unknown partner becomes NotFound (exit 1).

    Read from a standby, the output is followed (on stderr) by how current it is.
    """
    with db.get_read_engine().connect() as conn:
        fresh = queries.freshness(conn)
        try:
            yield conn
        except queries.UnknownPartner as error:
            raise NotFound(str(error)) from None
    if fresh.from_standby:
        print(f"(read from a standby: {_as_of(fresh.as_of)})", file=sys.stderr)


def _as_of(replayed_at: datetime | None) -> str:
    if replayed_at is None:
        return "it has replayed no commit since it started"
    behind_s = (datetime.now(timezone.utc) - replayed_at).total_seconds()
    return f"every commit up to {replayed_at:%Y-%m-%d %H:%M:%S} UTC, {behind_s:.1f} s before this read, is in it"


def print_result(result: dict[str, Any]) -> None:
    """One `name  value` line per field, the values aligned."""
    width = max(len(name) for name in result)
    for name, value in result.items():
        print(f"{name:<{width}}  {value}")


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    print(render(headers, [[cell(value) for value in row] for row in rows]))


def cell(value: Any) -> Any:
    """Instants and days as short text; numbers and None are left to the table renderer."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M")
    if isinstance(value, date):
        return value.isoformat()
    return value


def row_limit(text: str) -> int:
    """A `--limit` argument: how many rows to show, at most what a query returns."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if not 1 <= value <= queries.MAX_ROWS:
        raise argparse.ArgumentTypeError(f"must be from 1 to {queries.MAX_ROWS}, got {value}")
    return value
