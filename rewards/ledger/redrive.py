"""Operators' side of `job_failure`: list the failed jobs, and send them again.

A re-drive sends the recorded payload under the same task name and removes
the row, writing an audit event in the same transaction, so the failure's
history stays readable. Idempotency keys make it safe: a job that was applied
after all comes back `duplicate`; one that fails again is recorded again.

Removing a failure record is an operator's act, not a job's: the worker's
role may not delete `job_failure` rows (migrations/versions/0009_roles.py),
so re-drives run with the owner's REWARDS_DATABASE_URL.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, delete, select, text

from rewards.ledger import balance
from rewards.models import job_failure

_newest = select(job_failure).order_by(job_failure.c.last_seen_at.desc(), job_failure.c.id.desc()).limit(
    bindparam("limit"))
_all = select(job_failure).order_by(job_failure.c.id)
_by_ids = select(job_failure).where(job_failure.c.id.in_(bindparam("ids", expanding=True))).order_by(
    job_failure.c.id)
_delete = delete(job_failure).where(job_failure.c.id == bindparam("failure_id"))


def may_redrive(conn: Connection) -> bool:
    """Whether this connection's role may remove re-driven rows (SQLite has no roles: always)."""
    if conn.dialect.name != "postgresql":
        return True
    return conn.execute(text("SELECT has_table_privilege('job_failure', 'DELETE')")).scalar_one()


def newest(conn: Connection, limit: int) -> list[Row]:
    return conn.execute(_newest, {"limit": limit}).all()


def select_failures(conn: Connection, ids: Iterable[int] | None) -> list[Row]:
    """The rows with these ids, or every row when `ids` is None."""
    if ids is None:
        return conn.execute(_all).all()
    return conn.execute(_by_ids, {"ids": list(ids)}).all()


def redriven(conn: Connection, row: Row, job_id: str, now: datetime) -> None:
    """The failed job was sent again as `job_id`: drop its row, keep the story as an audit event."""
    partner_id = row.payload.get("partner_id") if isinstance(row.payload, dict) else None
    balance.audit(conn, "job_failure.redriven", partner_id if isinstance(partner_id, int) else None, {
        "failure_id": row.id, "task": row.task_name, "reason": row.reason, "error": row.error,
        "attempts": row.attempts, "payload": row.payload, "job_id": job_id,
    }, now)
    conn.execute(_delete, {"failure_id": row.id})
