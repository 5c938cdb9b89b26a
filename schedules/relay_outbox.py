"""rewards.maintenance.relay_outbox: deliver outbox events at least once (every few seconds).

Each batch is claimed in a short transaction (SELECT … FOR UPDATE SKIP LOCKED,
then leased by pushing next_attempt_at ahead), handed to the sink outside any
transaction, and its outcome recorded in another: delivered events get
delivered_at; a failed one gets attempts + 1 and a doubling delay; events the
run did not get to are handed back. A sink outage therefore only delays
events, and a relay that dies mid-batch loses none: its lease runs out and
the next run delivers them again, with the same event id.

After delivering, the run prunes events delivered more than the retention
period ago, through the retention engine: the worker's role may not delete
outbox rows (migrations/versions/0009_roles.py).

What a run costs: at most `budget_s` of deliveries, each batch one range of
`ix_outbox_pending` (undelivered events only, by due time). A claimed event
is delivered or leased ahead, so no run reads the same event twice and the
next run starts at the oldest event still due; pruning walks
`ix_outbox_delivered_at` in bounded batches, oldest first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import Engine

from rewards import contract
from rewards.ledger import outbox
from rewards.ledger.outbox import Message
from schedules.runner import Summary, run_exclusively
from schedules.sinks import DeliveryError, Sink

JOB = contract.MAINTENANCE_RELAY_OUTBOX


@dataclass(frozen=True)
class Limits:
    batch_size: int = 100
    # Stop starting deliveries after this long; the rest wait for the next run.
    budget_s: float = 20.0
    backoff_s_max: float = 600.0
    retention_days: int = 7
    max_batches: int = 1_000

    @property
    def lease_s(self) -> float:
        # Outlasts the run (budget plus one slow delivery), so no other relay
        # takes a claimed event while this one may still be delivering it.
        return 2 * self.budget_s + 60


@dataclass
class _Attempt:
    delivered: list[str] = field(default_factory=list)
    failed: tuple[Message, str] | None = None
    untried: list[str] = field(default_factory=list)


def run(engine: Engine, now: datetime, sink: Sink, limits: Limits = Limits(), *,
        retention_engine: Engine | None = None) -> Summary:
    """Deliver the events due at `now` through `sink`, then prune old delivered ones through
    `retention_engine` (`engine` when None)."""
    return run_exclusively(engine, JOB, now, lambda summary: _relay(
        engine, retention_engine or engine, now, sink, limits, summary))


def _relay(engine: Engine, retention_engine: Engine, now: datetime, sink: Sink, limits: Limits,
           summary: Summary) -> None:
    summary.details.update(delivered=0, failed=0, pruned=0)
    deadline = time.monotonic() + limits.budget_s
    while summary.batches < limits.max_batches and time.monotonic() < deadline:
        with engine.begin() as conn:
            messages = outbox.claim(conn, now=now, limit=limits.batch_size, lease_s=limits.lease_s)
        if not messages:
            break
        summary.batches += 1
        summary.examined += len(messages)
        attempt = _deliver(sink, messages, deadline)
        with engine.begin() as conn:
            _record(conn, attempt, now, limits)
        summary.changed += len(attempt.delivered)
        summary.details["delivered"] += len(attempt.delivered)
        if attempt.failed or attempt.untried:
            # The sink is down or the budget is spent: the next run carries on.
            summary.details["failed"] += 1 if attempt.failed else 0
            summary.more = True
            break
    summary.details["pruned"] = _prune(retention_engine, now, limits, deadline)


def _deliver(sink: Sink, messages: list[Message], deadline: float) -> _Attempt:
    attempt = _Attempt()
    for index, message in enumerate(messages):
        if time.monotonic() >= deadline:
            attempt.untried = [m.event_id for m in messages[index:]]
            break
        try:
            sink.deliver(message)
        except DeliveryError as error:
            # One failure says the sink is unwell: trying the rest of the
            # batch now would only spend the budget on timeouts.
            attempt.failed = (message, str(error))
            attempt.untried = [m.event_id for m in messages[index + 1:]]
            break
        attempt.delivered.append(message.event_id)
    return attempt


def _record(conn, attempt: _Attempt, now: datetime, limits: Limits) -> None:
    outbox.mark_delivered(conn, attempt.delivered, now=now)
    retry_at = now
    if attempt.failed is not None:
        message, error = attempt.failed
        delay_s = outbox.retry_delay_s(message.attempts + 1, cap_s=limits.backoff_s_max)
        retry_at = now + timedelta(seconds=delay_s)
        outbox.mark_failed(conn, message.event_id, error, retry_at=retry_at)
    # Events the run did not get to wait with the failed one, keeping their order.
    outbox.release(conn, attempt.untried, retry_at=retry_at)


def _prune(engine: Engine, now: datetime, limits: Limits, deadline: float) -> int:
    before = now - timedelta(days=limits.retention_days)
    pruned = 0
    for _ in range(limits.max_batches):
        with engine.begin() as conn:
            deleted = outbox.prune_delivered(conn, before=before, limit=limits.batch_size)
        pruned += deleted
        if deleted < limits.batch_size or time.monotonic() >= deadline:
            break
    return pruned
