"""What the workers count as they go: jobs, XP, retries, failures, maintenance runs (Prometheus).

Each counter is bumped where the fact becomes true: a job's outcome and its
XP once its transaction committed, a retry when it is scheduled, a failure
once it is recorded. Labels are job names, statuses, reasons, entry types
and error classes: bounded sets, never a partner id or free text (a label
value outside the contract becomes "other").

The state that lives in the servers (queue depths, dead letters, the outbox,
each maintenance job's last run) is read when Prometheus scrapes, by beat:
rewards.metrics.state. How they are served: rewards.metrics.serve.
"""

from __future__ import annotations

import functools
import logging
import math
from collections import Counter as Tally
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from prometheus_client import Counter, Histogram
from sqlalchemy import Connection

from rewards import contract
from rewards.contract.results import BatchResult, Outcome
from rewards.logs import log_event
from rewards.models import ENTRY_TYPES

logger = logging.getLogger("rewards.metrics")

OTHER = "other"
# Every name a job or a failure record may carry, as a label value.
JOB_NAMES = frozenset({*contract.QUEUE_BY_TASK, *contract.MAINTENANCE_JOBS})
# A client's send time further off than this is a wrong clock or a forged
# header, not a latency: it is not observed.
SENT_AT_PLAUSIBLE_S = 86_400

OUTCOMES = Counter(
    "rewards_outcomes_total",
    "Jobs applied, absorbed as duplicates or rejected: a batch counts each item under the item's job name",
    ["job_name", "status", "reason"])
XP_GRANTED = Counter("rewards_xp_granted_total", "XP credited, by ledger entry type (committed)", ["entry_type"])
XP_DEDUCTED = Counter("rewards_xp_deducted_total", "XP taken back, by ledger entry type (committed)",
                      ["entry_type"])
JOB_DURATION = Histogram(
    "rewards_job_duration_seconds", "Time a worker spent on one job message, from start to commit", ["job_name"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60))
JOB_LATENCY = Histogram(
    "rewards_job_latency_seconds",
    "From the client's send to the job's commit, retries included (jobs sent by rewards.client)", ["job_name"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
RETRIES = Counter("rewards_job_retries_total", "Job retries scheduled, by the fault that caused them",
                  ["job_name", "error"])
REQUEUED = Counter("rewards_jobs_requeued_total",
                   "Jobs handed back to the broker because even their retry could not be published", ["job_name"])
FAILURES = Counter("rewards_job_failures_total",
                   "Failed jobs recorded, by reason and where the record went (database, dead_letter, log)",
                   ["job_name", "reason", "kept_in"])
MAINTENANCE_RUNS = Counter("rewards_maintenance_runs_total",
                           "Maintenance runs: done, or skipped (another run held the job's lock)",
                           ["job_name", "result"])
MAINTENANCE_EXAMINED = Counter("rewards_maintenance_rows_examined_total", "Rows maintenance runs examined",
                               ["job_name"])
MAINTENANCE_CHANGED = Counter("rewards_maintenance_rows_changed_total", "Rows maintenance runs changed",
                              ["job_name"])
# Unlabelled, so it is exported at 0 from the start and increase() sees the
# first mismatch; every chained run's finds count, whatever the last run found.
RECONCILE_MISMATCHES = Counter("rewards_reconcile_mismatches_found_total",
                               "Broken ledger invariants found by reconcile runs")

F = TypeVar("F", bound=Callable[..., Any])


def never_raises(record: F) -> F:
    """Counting must never fail a job: a metric that cannot be kept is logged and skipped."""
    @functools.wraps(record)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        try:
            return record(*args, **kwargs)
        except Exception as error:  # noqa: BLE001 - see above
            log_event(logger, logging.WARNING, "metrics.unrecorded", metric=record.__name__,
                      error=type(error).__name__)
            return None
    return guarded  # type: ignore[return-value]


_xp_pending: ContextVar[Tally | None] = ContextVar("rewards_xp_pending", default=None)
# Error classes seen as retry causes are few (the transient database errors);
# an unexpected one still counts, under its own bounded name.
_ERROR_NAME_CHARS_MAX = 64


def job_label(name: str | None) -> str:
    return name if name in JOB_NAMES else OTHER


@contextmanager
def xp_tally() -> Iterator[Tally]:
    """Collect the XP the ledger writes in this block; the caller counts it once the transaction committed."""
    tally: Tally = Tally()
    token = _xp_pending.set(tally)
    try:
        yield tally
    finally:
        _xp_pending.reset(token)


def tally_xp(entry_type: str, amount_xp: int) -> None:
    """One ledger row about to be written; counted only if its transaction commits (see xp_tally)."""
    tally = _xp_pending.get()
    if tally is not None:
        tally[entry_type, amount_xp > 0] += amount_xp


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """`conn.begin_nested()`, with the XP tallied inside it forgotten when it rolls back."""
    tally = _xp_pending.get()
    kept = Tally(tally) if tally is not None else None
    try:
        with conn.begin_nested():
            yield
    except BaseException:
        if tally is not None:
            tally.clear()
            tally.update(kept)
        raise


@never_raises
def count_xp(tally: Tally) -> None:
    """XP the committed transaction wrote: credits and debits apart, by entry type."""
    for (entry_type, credited), amount_xp in tally.items():
        label = entry_type if entry_type in ENTRY_TYPES else OTHER
        if credited:
            XP_GRANTED.labels(label).inc(amount_xp)
        elif amount_xp:
            XP_DEDUCTED.labels(label).inc(-amount_xp)


def plausible_sent_at(value: Any, now_s: float) -> float | None:
    """The producer's send time, when it is a number within a day of now (a header anyone may set)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value) if abs(now_s - value) <= SENT_AT_PLAUSIBLE_S else None


@never_raises
def count_job(name: str, outcome: Outcome, duration_s: float, *, sent_at: Any,
              now_s: float, item_jobs: Sequence[str | None] = ()) -> None:
    """A job message done: its outcome (each item's, for a batch that had any), time taken and latency."""
    label = job_label(name)
    JOB_DURATION.labels(label).observe(duration_s)
    sent_at_s = plausible_sent_at(sent_at, now_s)
    if sent_at_s is not None:
        JOB_LATENCY.labels(label).observe(max(0.0, now_s - sent_at_s))
    details = outcome.details
    if isinstance(details, BatchResult) and details.items:
        # Added up first: one increment per kind of outcome, not per item of a 500-item batch.
        kinds = Tally((job_label(item_job), item.status, item.reason or "")
                      for item, item_job in zip(details.items, item_jobs or [None] * len(details.items)))
    else:
        kinds = Tally([(label, outcome.status, outcome.reason or "")])
    for labels, count in kinds.items():
        OUTCOMES.labels(*labels).inc(count)


@never_raises
def count_retry(name: str, error: BaseException) -> None:
    RETRIES.labels(job_label(name), type(error).__name__[:_ERROR_NAME_CHARS_MAX]).inc()


@never_raises
def count_requeue(name: str) -> None:
    REQUEUED.labels(job_label(name)).inc()


@never_raises
def count_failure(name: str, reason: str, kept_in: str) -> None:
    FAILURES.labels(job_label(name), reason, kept_in).inc()


@never_raises
def count_maintenance(job: str, *, skipped: bool, examined: int, changed: int, mismatches: int = 0) -> None:
    label = job_label(job)
    MAINTENANCE_RUNS.labels(label, "skipped" if skipped else "done").inc()
    MAINTENANCE_EXAMINED.labels(label).inc(examined)
    MAINTENANCE_CHANGED.labels(label).inc(changed)
    RECONCILE_MISMATCHES.inc(mismatches)
