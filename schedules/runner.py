"""What every maintenance job shares: one run at a time, a summary, a log line.

Each job (schedules/<job>.py) does its work in bounded batches inside
`run_exclusively`, which holds the job's advisory lock for the whole run, so
two overlapping runs (two beats, a slow run, an operator's manual run) do the
work once: the second finds the lock held and skips. A job that walks more
than one run may examine keeps its place in `maintenance_checkpoint`, one
row per job, so the next run carries on where the last one stopped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select

from rewards import db, metrics
from rewards.logs import log_event
from rewards.models import maintenance_checkpoint, maintenance_run, utcnow

logger = logging.getLogger("rewards.maintenance")

LOCK_HELD = "lock held"


@dataclass
class Summary:
    """What one run did: rows examined and changed, how long it took, or why it skipped."""

    job: str
    now: datetime
    examined: int = 0
    changed: int = 0
    batches: int = 0
    # True when the run stopped at its batch limit with work left for the next run.
    more: bool = False
    took_ms: float = 0.0
    skipped: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def as_result(self) -> dict[str, Any]:
        """The job's JSON result."""
        result = {
            "job": self.job, "now": self.now.isoformat(), "examined": self.examined,
            "changed": self.changed, "batches": self.batches, "more": self.more,
            "took_ms": self.took_ms, "skipped": self.skipped,
        }
        result.update(self.details)
        return result


def run_exclusively(engine: Engine, job: str, now: datetime,
                    work: Callable[[Summary], None]) -> Summary:
    """Run `work` under the job's advisory lock, then log and return the summary."""
    started = time.perf_counter()
    summary = Summary(job=job, now=now)
    with db.advisory_lock(engine, job) as acquired:
        if acquired:
            work(summary)
        else:
            summary.skipped = LOCK_HELD
    summary.took_ms = round((time.perf_counter() - started) * 1000, 2)
    metrics.count_maintenance(job, skipped=summary.skipped is not None, examined=summary.examined,
                              changed=summary.changed, mismatches=summary.details.get("mismatches", 0))
    record_run(engine, summary)
    log_event(logger, logging.INFO, "maintenance.skipped" if summary.skipped else "maintenance.done",
              job=job, now=now.isoformat(), examined=summary.examined, changed=summary.changed,
              batches=summary.batches, more=summary.more or None, took_ms=summary.took_ms,
              skipped=summary.skipped,
              **{name: value for name, value in summary.details.items() if isinstance(value, int)})
    return summary


_select_checkpoint = select(maintenance_checkpoint.c.position).where(
    maintenance_checkpoint.c.job == bindparam("job"))


def checkpoint(conn: Connection, job: str) -> int:
    """Where `job` left off (its own meaning of a position), 0 when it never stopped anywhere."""
    return conn.execute(_select_checkpoint, {"job": job}).scalar_one_or_none() or 0


def save_checkpoint(conn: Connection, job: str, position: int, now: datetime) -> None:
    """Record where `job` got to, in the transaction of the work that got it there."""
    statement = db.insert_on_conflict(maintenance_checkpoint).values(job=job, position=position, updated_at=now)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["job"], set_={"position": statement.excluded.position, "updated_at": now}))


def _counts(details: dict[str, Any]) -> dict[str, int]:
    """The details worth a time series: the job-specific counts (reconcile's mismatches, …)."""
    return {name: value for name, value in details.items()
            if isinstance(value, int) and not isinstance(value, bool)}


def record_run(engine: Engine, summary: Summary) -> None:
    """Keep the run in maintenance_run; a database that cannot take it costs the record, not the run."""
    row = {"job": summary.job, "last_run_at": utcnow(), "skipped": summary.skipped}
    done = {"done_at": row["last_run_at"], "examined": summary.examined, "changed": summary.changed,
            "more": summary.more, "took_ms": summary.took_ms, "details": _counts(summary.details)}
    if summary.skipped is None:
        row |= done
    statement = db.insert_on_conflict(maintenance_run).values(**row)
    try:
        with engine.begin() as conn:
            conn.execute(statement.on_conflict_do_update(
                index_elements=["job"], set_={name: statement.excluded[name] for name in row if name != "job"}))
    except Exception as error:  # noqa: BLE001 - the run's own work is done and committed
        log_event(logger, logging.WARNING, "maintenance.run_unrecorded", job=summary.job,
                  error=type(error).__name__)
