"""PostgreSQL's own limit for the engine's check-in: pgbench replaying its SQL.

The script is not written by hand: one in-order check-in is applied through
`apply_checkin` with a SQLAlchemy cursor event recording every statement and
its parameters, the transaction is rolled back, and each statement is
rendered with its literal values (psycopg's client-side binding). The
sentinel partner and day are then replaced by pgbench variables, so every
pgbench transaction writes a check-in of its own: same statements, same
round trips, same rows as the engine's, without Python.
"""

from __future__ import annotations

import glob
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import psycopg
from sqlalchemy import Connection, event, text
from sqlalchemy.engine import make_url

from rewards import db
from rewards import settings as settings_module
from rewards.contract.payloads import CheckinJob
from rewards.ledger.checkins import apply_checkin

SENTINEL_PARTNER_ID = 987_654_321
# Each pgbench transaction checks one of its client's partners in on a day of
# its own: the sentinel day's year becomes a variable (':year-11-15'), so the
# key strings vary too, and a partner takes DAYS_PER_PARTNER years in turn.
SENTINEL_DAY = date(2026, 11, 15)
DAYS_PER_PARTNER = 57
PARTNER_STRIDE = 1_000_000
CLIENT_COUNTS = (2, 4, 8, 16)


def _apply(conn, day: date) -> None:
    current = settings_module.get()
    occurred_at = datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=9)
    job = CheckinJob.model_validate({"partner_id": SENTINEL_PARTNER_ID, "occurred_at": occurred_at.isoformat()})
    outcome = apply_checkin(conn, job, current.policy, now=occurred_at + timedelta(minutes=1),
                            future_tolerance=timedelta(seconds=current.future_tolerance_s))
    if outcome.status != "applied":
        raise RuntimeError(f"the captured check-in was not applied: {outcome}")


def captured_statements() -> list[str]:
    """The SQL one in-order check-in executes, each statement with its literal values."""
    return capture(_apply)


def capture(apply: Callable[[Connection, date], None]) -> list[str]:
    """The SQL `apply(conn, SENTINEL_DAY)` executes after `apply(conn, the day before)`, with literal values.

    Everything is rolled back: the capture writes nothing.
    """
    captured: list[tuple[str, object]] = []

    def record(_conn, _cursor, statement, parameters, _context, executemany):
        for params in (parameters if executemany else [parameters]):
            captured.append((statement, params))

    with db.get_engine().connect() as conn:
        with conn.begin() as transaction:
            apply(conn, SENTINEL_DAY - timedelta(days=1))  # the partners and their yesterday
            event.listen(conn, "before_cursor_execute", record)
            apply(conn, SENTINEL_DAY)
            event.remove(conn, "before_cursor_execute", record)
            binder = psycopg.ClientCursor(conn.connection.driver_connection)
            rendered = [binder.mogrify(statement, params) for statement, params in captured]
            transaction.rollback()
    return rendered


def script(statements: list[str]) -> str:
    """A pgbench script: the variables of this transaction's check-in, then the statements."""
    day = SENTINEL_DAY.isoformat()
    lines = [
        r"\set n :n + 1",
        rf"\set pid :client_id * {PARTNER_STRIDE} + :n / {DAYS_PER_PARTNER} + 1",
        rf"\set year 2000 + :n % {DAYS_PER_PARTNER}",
        "BEGIN;",
    ]
    for statement in statements:
        statement = vary(statement, str(SENTINEL_PARTNER_ID), ":pid")
        statement = vary(statement, day, ":year" + day[4:])
        lines.append(re.sub(r"\s+", " ", statement).strip() + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


def vary(statement: str, literal: str, variable: str) -> str:
    """`literal` replaced by pgbench's `variable`.

    pgbench skips a `::` (a cast), so after a colon, which only happens
    inside a key string ('checkin:42:2026-11-15'), the variable is
    concatenated into the string instead, in parentheses, so that a cast
    after the string (an array of keys, '{…}'::text[]) still applies to all of it.
    """
    name = variable[1:].split("-")[0]
    rest = variable[1 + len(name):]

    def concatenated(string: re.Match) -> str:
        found = string.group(0)
        if ":" + literal not in found:
            return found
        return "(" + found.replace(":" + literal, f":' || :{name} || '{rest}") + ")"

    statement = _STRING_LITERAL.sub(concatenated, statement)
    return statement.replace(literal, variable)


_STRING_LITERAL = re.compile(r"'(?:[^']|'')*'")


def pgbench_path() -> str:
    found = shutil.which("pgbench") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/pgbench"))), None)
    if found is None:
        raise SystemExit("pgbench is missing: apt-get install postgresql-contrib (it ships with PostgreSQL)")
    return found


@dataclass(frozen=True)
class SqlLimit:
    clients: int
    transactions: int
    per_s: float
    command: str
    statements: int


def _create_partners(clients: int, per_client: int) -> None:
    partners_per_client = per_client // DAYS_PER_PARTNER + 2
    with db.transaction() as conn:
        conn.execute(text("""
            INSERT INTO partner (id, created_at, updated_at)
            SELECT c * :stride + n, now(), now()
            FROM generate_series(0, :clients - 1) c, generate_series(1, :partners) n
        """), {"stride": PARTNER_STRIDE, "clients": clients, "partners": partners_per_client})


def check_written(expected: int) -> None:
    """pgbench must have written every check-in its transactions stand for: a replay that wrote nothing is no limit."""
    with db.get_engine().connect() as conn:
        written = conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar_one()
    if written != expected:
        raise RuntimeError(f"pgbench wrote {written} check-ins of {expected}: the captured script no longer "
                           f"replays what the engine writes")


def run_pgbench(script_path: str, clients: int, per_client: int) -> tuple[float, str]:
    url = make_url(settings_module.get().database_url)
    argv = [pgbench_path(), "-n", "-h", url.host or "127.0.0.1", "-p", str(url.port or 5432),
            "-U", url.username or "postgres", "-c", str(clients), "-j", str(min(clients, 2)),
            "-t", str(per_client), "-D", "n=-1", "-f", script_path, url.database]
    output = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
    tps = float(re.search(r"tps = ([0-9.]+)", output).group(1))
    return tps, " ".join(["pgbench", *argv[1:]])


def run(transactions: int, reset) -> SqlLimit:
    """The best rate over CLIENT_COUNTS, each on an emptied database."""
    statements = captured_statements()
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="checkin-", delete=False) as file:
        file.write(script(statements))
    best: SqlLimit | None = None
    for clients in CLIENT_COUNTS:
        reset()
        per_client = max(1, transactions // clients)
        _create_partners(clients, per_client)
        tps, shown = run_pgbench(file.name, clients, per_client)
        check_written(clients * per_client)
        if best is None or tps > best.per_s:
            best = SqlLimit(clients, clients * per_client, tps, shown, len(statements))
    reset()
    return best
