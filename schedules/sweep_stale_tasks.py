"""rewards.maintenance.sweep_stale_tasks: STARTED attempts older than STALE_TASK_DAYS become EXPIRED.

An expired task can be started again as a new attempt. Each expiry is one
conditional `UPDATE … WHERE status = 'STARTED'`, so a claim that commits at
the same moment wins or loses cleanly: a completed attempt is never expired,
and an expired one can no longer be claimed. Each expiry writes an audit row
and a `task.expired` event keyed by the attempt, in the same transaction.

What a run costs: one range of `ix_partner_task_stale_sweep` (STARTED
attempts only, by start) per batch. Every attempt it reads leaves that index
in the same transaction (expired, or completed by a claim that won the
race), so each batch starts at the oldest attempt still due and a run that
stops at its batch limit leaves the rest first in line for the next.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, insert, select, tuple_, update

from rewards import contract
from rewards.contract import keys
from rewards.ledger import outbox
from rewards.models import audit_event, partner_task
from schedules.runner import Summary, run_exclusively

JOB = contract.MAINTENANCE_SWEEP_STALE_TASKS


def run(engine: Engine, now: datetime, batch_size: int, stale_after_days: int,
        max_batches: int = 1_000) -> Summary:
    """Expire every attempt started before `now - stale_after_days`, `batch_size` per transaction."""
    started_before = now - timedelta(days=stale_after_days)
    return run_exclusively(engine, JOB, now, lambda summary: _sweep(engine, now, started_before,
                                                                     batch_size, max_batches, summary))


def _sweep(engine: Engine, now: datetime, started_before: datetime, batch_size: int,
           max_batches: int, summary: Summary) -> None:
    while summary.batches < max_batches:
        with engine.begin() as conn:
            stale = conn.execute(
                select(partner_task.c.partner_id, partner_task.c.task_id, partner_task.c.attempt)
                .where(partner_task.c.status == "STARTED", partner_task.c.started_at < started_before)
                .order_by(partner_task.c.started_at)
                .limit(batch_size)
            ).fetchall()
            if not stale:
                return
            summary.batches += 1
            summary.examined += len(stale)
            expired = conn.execute(
                update(partner_task)
                .where(tuple_(partner_task.c.partner_id, partner_task.c.task_id, partner_task.c.attempt)
                       .in_([tuple(row) for row in stale]),
                       partner_task.c.status == "STARTED")
                .values(status="EXPIRED")
                .returning(partner_task.c.partner_id, partner_task.c.task_id, partner_task.c.attempt,
                           partner_task.c.started_at)
            ).fetchall()
            _record(conn, expired, now)
            summary.changed += len(expired)
    summary.more = True


def _record(conn, expired, now: datetime) -> None:
    payloads = [{"partner_id": row.partner_id, "task_id": row.task_id, "attempt": row.attempt,
                 "started_at": row.started_at.isoformat()} for row in expired]
    if not payloads:
        return
    conn.execute(insert(audit_event), [
        {"event_type": "task.expired", "partner_id": p["partner_id"], "payload": p, "created_at": now}
        for p in payloads
    ])
    outbox.emit_many(conn, [
        outbox.Event(outbox.TASK_EXPIRED, p["partner_id"], p,
                     key=keys.key(keys.TASK_EXPIRED_EVENT, partner_id=p["partner_id"],
                                  task_id=p["task_id"], attempt=p["attempt"]))
        for p in payloads
    ], now=now)
