"""PostgreSQL's own limit for the batched path: pgbench replaying its SQL, BATCH check-ins per transaction.

Captured as sql_limit captures the per-check-in path: one in-order batch of
BATCH partners' check-ins is applied through `apply_checkin_batch` with a
cursor event recording every statement, rolled back, and rendered with its
literal values. Each partner id becomes a pgbench variable offset by the
client's id, and the day a variable of the transaction, so every pgbench
transaction writes BATCH check-ins of its own: the worker's statements
without Celery or Python.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

from sqlalchemy import text

from benchmarks.sql_limit import (
    DAYS_PER_PARTNER,
    PARTNER_STRIDE,
    SENTINEL_DAY,
    run_pgbench,
    vary,
    capture,
    check_written,
)
from rewards import db
from rewards import settings as settings_module
from rewards.contract.payloads import CheckinBatchJob
from rewards.ledger.batches import apply_checkin_batch

BATCH = 500
# Nine digits each, so no partner's id is part of another's.
FIRST_PARTNER_ID = 900_000_000
CLIENT_COUNTS = (1, 2, 4)


def _apply(conn, day: date) -> None:
    current = settings_module.get()
    occurred_at = datetime.combine(day, datetime.min.time(), timezone.utc) + timedelta(hours=9)
    batch = CheckinBatchJob.model_validate({"checkins": [
        {"partner_id": FIRST_PARTNER_ID + offset, "occurred_at": occurred_at.isoformat()} for offset in range(BATCH)]})
    outcome = apply_checkin_batch(conn, batch, current.policy, now=occurred_at + timedelta(minutes=1),
                                  future_tolerance=timedelta(seconds=current.future_tolerance_s), job_id=None)
    if outcome.details.applied != BATCH:
        raise RuntimeError(f"the captured batch applied {outcome.details.applied} of {BATCH} check-ins")


def script(statements: list[str]) -> str:
    """A pgbench script: this transaction's day and its client's partners, then the batch's statements."""
    day = SENTINEL_DAY.isoformat()
    lines = [r"\set n :n + 1", rf"\set year 2000 + :n % {DAYS_PER_PARTNER}",
             rf"\set base :client_id * {PARTNER_STRIDE}"]
    lines += [rf"\set p{offset} :base + {offset + 1}" for offset in range(BATCH)]
    lines.append("BEGIN;")
    for statement in statements:
        statement = vary(statement, day, ":year" + day[4:])
        for offset in range(BATCH):
            statement = vary(statement, str(FIRST_PARTNER_ID + offset), f":p{offset}")
        lines.append(" ".join(statement.split()) + ";")
    lines.append("COMMIT;")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SqlSetLimit:
    clients: int
    checkins: int
    per_s: float
    command: str
    statements: int


def _create_partners(clients: int) -> None:
    with db.transaction() as conn:
        conn.execute(text("""
            INSERT INTO partner (id, created_at, updated_at)
            SELECT c * :stride + n, now(), now()
            FROM generate_series(0, :clients - 1) c, generate_series(1, :batch) n
        """), {"stride": PARTNER_STRIDE, "clients": clients, "batch": BATCH})


def run(checkins: int, reset) -> SqlSetLimit:
    """The best check-in rate over CLIENT_COUNTS, each on an emptied database."""
    statements = capture(_apply)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", prefix="checkin-batch-", delete=False) as file:
        file.write(script(statements))
    best: SqlSetLimit | None = None
    for clients in CLIENT_COUNTS:
        reset()
        per_client = min(DAYS_PER_PARTNER, max(1, checkins // (clients * BATCH)))
        _create_partners(clients)
        tps, shown = run_pgbench(file.name, clients, per_client)
        check_written(clients * per_client * BATCH)
        if best is None or tps * BATCH > best.per_s:
            best = SqlSetLimit(clients, clients * per_client * BATCH, tps * BATCH, shown, len(statements))
    reset()
    return best
