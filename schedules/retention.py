"""rewards.maintenance.retention: audit months and settled failure records past their retention (daily).

What each table is for and how long it lives:

- ``xp_ledger``, ``xp_ledger_key``, ``checkin``, ``partner_task``,
  ``referral``, ``adjustment``, ``plan_change``: the money trail and the keys
  that make jobs exactly-once; kept. On PostgreSQL the ledger is partitioned
  by month (migrations/versions/0012), so old months can move to cheaper
  storage; the run makes its months ahead too.
- ``audit_event``: what happened, for support and investigations; kept
  REWARDS_AUDIT_RETENTION_DAYS (90), then dropped a month at a time. On
  PostgreSQL it is partitioned by month (migrations/versions/0011): the run
  makes the months ahead (three) and drops every month wholly older than the
  retention, both through functions only the retention role may call. On
  SQLite old rows are deleted in batches.
- ``outbox``: delivered events, kept REWARDS_OUTBOX_RETENTION_DAYS and pruned
  by the relay (schedules/relay_outbox.py).
- ``job_failure``: a refused message (bad payload, unknown job, wrong queue)
  is settled when it is recorded, and is deleted once not seen for
  REWARDS_FAILURE_RETENTION_DAYS (30); a job that failed for the engine's
  own reasons (retries exhausted, an error) waits for an operator to re-drive
  it, however old.

What a run costs: two catalogue reads and a DROP per expired month on
PostgreSQL; the failure pruning walks `ix_job_failure_last_seen_at` in
bounded batches, oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, Engine, bindparam, delete, select, text

from rewards import contract
from rewards.models import audit_event, job_failure
from schedules.runner import Summary, run_exclusively

JOB = contract.MAINTENANCE_RETENTION

# Failure reasons an operator must act on: the job itself was good.
NEEDS_OPERATOR = ("retries_exhausted", "error", "apply_failed")
MONTHS_AHEAD = 3


@dataclass(frozen=True)
class Limits:
    audit_days: int = 90
    failure_days: int = 30
    batch_size: int = 500
    max_batches: int = 200


def run(engine: Engine, now: datetime, limits: Limits) -> Summary:
    """`engine` connects as the retention role."""
    return run_exclusively(engine, JOB, now, lambda summary: _retain(engine, now, limits, summary))


def _retain(engine: Engine, now: datetime, limits: Limits, summary: Summary) -> None:
    audit_before = now - timedelta(days=limits.audit_days)
    if engine.dialect.name == "postgresql":
        ahead = now + timedelta(days=31 * MONTHS_AHEAD)
        with engine.begin() as conn:
            summary.details["audit_months_added"] = _call(conn, "audit_event_add_partitions", ahead)
            summary.details["ledger_months_added"] = _call(conn, "xp_ledger_add_partitions", ahead)
        with engine.begin() as conn:
            dropped = _call(conn, "audit_event_drop_partitions", audit_before)
        summary.details["audit_months_dropped"] = dropped
        summary.changed += len(dropped)
    else:
        summary.details["audit_rows_deleted"] = _in_batches(engine, summary, limits, _old_audit, audit_before)
    summary.details["failures_deleted"] = _in_batches(
        engine, summary, limits, _settled_failures, now - timedelta(days=limits.failure_days))


def _call(conn: Connection, function: str, instant: datetime) -> list[str]:
    """A partition function's result: the partitions it made or dropped."""
    return list(conn.execute(text(f"SELECT * FROM {function}(:instant)"), {"instant": instant}).scalars())


_old_audit = select(audit_event.c.id).where(audit_event.c.created_at < bindparam("before")).order_by(
    audit_event.c.id).limit(bindparam("limit"))
_settled_failures = select(job_failure.c.id).where(
    job_failure.c.last_seen_at < bindparam("before"), job_failure.c.reason.not_in(NEEDS_OPERATOR),
).order_by(job_failure.c.last_seen_at).limit(bindparam("limit"))


def _in_batches(engine: Engine, summary: Summary, limits: Limits, oldest, before: datetime) -> int:
    """Delete what `oldest` selects, a batch per transaction, until none is left or the run's batches are spent."""
    table = oldest.get_final_froms()[0]
    deleted = 0
    for _ in range(limits.max_batches):
        with engine.begin() as conn:
            ids = conn.execute(oldest, {"before": before, "limit": limits.batch_size}).scalars().all()
            if ids:
                conn.execute(delete(table).where(table.c.id.in_(ids)))
        summary.batches += 1
        summary.examined += len(ids)
        deleted += len(ids)
        if len(ids) < limits.batch_size:
            break
    else:
        summary.more = True
    summary.changed += deleted
    return deleted
