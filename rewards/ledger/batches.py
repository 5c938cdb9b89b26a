"""Applying many check-ins from one message: each exactly once, each with its own result.

A batch is a list of `rewards.checkin` payloads. Each is validated on its
own, so one bad check-in is rejected alone; the valid ones are applied in
the job's one transaction. Should the database refuse one of them (which
validation makes rare), the batch's writes are rolled back to a savepoint
and applied again, each check-in inside a savepoint of its own, so that
check-in is rolled back alone: the common case pays no savepoint per item. Every item keeps its own idempotency
key: a batch delivered twice finds every check-in already there and pays
nothing twice.

On PostgreSQL the in-order check-ins are applied set-based: all the batch's
partners are locked in id order by one statement, and each round (every
partner's next check-in) is written by one statement (`balance.credit_checkins`).
Anything else (a late day, a duplicate, a check-in in the future) goes
through `apply_checkin`, with that partner's later items, so a batch holding
several days of one partner in any order converges as DESIGN.md 6a says; a
redelivered batch finds every key there and pays nothing twice.

Items are applied sorted by partner, then occurred_at. That is the order
rewards assume (DESIGN.md 6a: the outcome depends on the set of check-ins,
not on the order they arrive), it makes the in-order path the common one,
and two batches running at once lock their partners in the same order, so
they wait for each other instead of deadlocking.
"""

from __future__ import annotations

from collections import deque
from datetime import datetime, timedelta
from types import SimpleNamespace

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from rewards import contract, db, metrics, rules
from rewards.contract.payloads import (
    CheckinBatchJob,
    CheckinJob,
    validate_job,
)
from rewards.contract.results import (
    APPLY_FAILED,
    INVALID_PAYLOAD,
    REJECTED,
    BatchResult,
    Outcome,
)
from rewards.ledger import balance, checkins
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.failures import record_failure
from rewards.rules import Policy, PricedCheckin

Item = tuple[int, CheckinJob]  # (position in the batch, check-in)


def apply_checkin_batch(conn: Connection, batch: CheckinBatchJob, policy: Policy, *, now: datetime,
                        future_tolerance: timedelta, job_id: str | None) -> Outcome:
    outcomes: list[Outcome | None] = [None] * len(batch.checkins)
    valid: list[tuple[int, CheckinJob]] = []
    for index, item in enumerate(batch.checkins):
        job, rejection = validate_item(item)
        if rejection is None:
            valid.append((index, job))
        else:
            outcomes[index] = rejection
            record_failure(conn, task_name=contract.CHECKIN_BATCH, job_id=job_id, payload=item,
                           reason=INVALID_PAYLOAD, error=rejection.message, now=now)
    valid.sort(key=lambda pair: (pair[1].partner_id, pair[1].occurred_at, pair[0]))
    try:
        with metrics.savepoint(conn):
            if db.writes_in_one_statement(conn):
                _apply_set_based(conn, valid, outcomes, policy, now, future_tolerance)
            else:
                for index, job in valid:
                    outcomes[index] = _apply(conn, job, policy, now, future_tolerance)
    except DBAPIError as error:
        if db.is_transient(error):
            raise
        for index, job in valid:
            outcomes[index] = _apply_alone(conn, job, policy, now, future_tolerance, job_id)
    return BatchResult.of(outcomes).outcome()


def validate_item(item: object) -> tuple[CheckinJob | None, Outcome | None]:
    """A batch item as a CheckinJob, or its rejection naming every field at fault."""
    return validate_job(CheckinJob, (), item)


def _apply_set_based(conn: Connection, valid: list[Item], outcomes: list[Outcome | None], policy: Policy,
                     now: datetime, future_tolerance: timedelta) -> None:
    """Lock every partner at once, then write each round of in-order check-ins in one statement."""
    pending: dict[int, deque[Item]] = {}
    for index, job in valid:
        if job.occurred_at > now + future_tolerance:  # rejected before any partner row is touched
            outcomes[index] = _apply(conn, job, policy, now, future_tolerance)
        else:
            pending.setdefault(job.partner_id, deque()).append((index, job))
    states = {partner_id: SimpleNamespace(**row._mapping)
              for partner_id, row in balance.lock_partners(conn, list(pending), now).items()}
    while pending:
        round_ = []
        for partner_id in list(pending):
            index, job = pending[partner_id][0]
            priced = _price_in_order(conn, states[partner_id], job, policy)
            if priced is None:
                _apply_rest(conn, pending.pop(partner_id), outcomes, policy, now, future_tolerance)
                continue
            round_.append((index, job, priced))
            pending[partner_id].popleft()
            if not pending[partner_id]:
                del pending[partner_id]
        _write_round(conn, round_, states, pending, outcomes, policy, now, future_tolerance)


def _price_in_order(conn: Connection, state: SimpleNamespace, job: CheckinJob,
                    policy: Policy) -> PricedCheckin | None:
    """The price of `job` if it is the partner's next day; None sends it to `apply_checkin`."""
    day = rules.local_day(job.occurred_at, state.timezone)
    if not checkins.is_next(state, job, day):
        return None
    return checkins.price_next(conn, state, job, day, policy)


def _write_round(conn: Connection, round_: list[tuple[int, CheckinJob, PricedCheckin]],
                 states: dict[int, SimpleNamespace], pending: dict[int, deque[Item]],
                 outcomes: list[Outcome | None], policy: Policy, now: datetime,
                 future_tolerance: timedelta) -> None:
    """One statement for the round's check-ins (distinct partners), then each one's events."""
    credits = [checkins.checkin_credit(states[job.partner_id], job, priced, policy) for _, job, priced in round_]
    xp_after_by_day = balance.credit_checkins(conn, credits, rule_version=policy.version, now=now)
    for (index, job, priced), credit in zip(round_, credits):
        xp_after = xp_after_by_day.get((job.partner_id, priced.day))
        if xp_after is None:  # the day's key was already there: the general path says what it was
            _apply_rest(conn, deque([(index, job)] + list(pending.pop(job.partner_id, ()))),
                        outcomes, policy, now, future_tolerance)
            continue
        checkins.after_credit(conn, job.partner_id, priced, policy, now)
        outcomes[index] = checkins.applied(job.partner_id, priced, xp_after)
        state = states[job.partner_id]
        state.xp, state.checkin_streak, state.longest_streak = xp_after, priced.streak_days, credit.longest_streak_days
        state.last_checkin_day, state.last_checkin_at = priced.day, job.occurred_at
        state.total_checkins += 1


def _apply_rest(conn: Connection, items: deque[Item], outcomes: list[Outcome | None], policy: Policy,
                now: datetime, future_tolerance: timedelta) -> None:
    """A partner's remaining check-ins, in order, one by one through `apply_checkin`."""
    for index, job in items:
        outcomes[index] = _apply(conn, job, policy, now, future_tolerance)


def _apply(conn: Connection, job: CheckinJob, policy: Policy, now: datetime,
           future_tolerance: timedelta) -> Outcome:
    outcome = apply_checkin(conn, job, policy, now=now, future_tolerance=future_tolerance)
    if outcome.status == REJECTED:
        balance.audit(conn, "job.rejected", job.partner_id, {
            "task": contract.CHECKIN_BATCH, "reason": outcome.reason, "message": outcome.message,
            "key": outcome.key, "payload": job.model_dump(mode="json"),
        }, now)
    return outcome


def _apply_alone(conn: Connection, job: CheckinJob, policy: Policy, now: datetime,
                 future_tolerance: timedelta, job_id: str | None) -> Outcome:
    try:
        with metrics.savepoint(conn):
            return _apply(conn, job, policy, now, future_tolerance)
    except DBAPIError as error:
        # A lost connection or a lock timeout is the whole batch's to retry;
        # anything else the database refused belongs to this check-in alone.
        if db.is_transient(error):
            raise
        message = f"{type(error.orig).__name__}: {error.orig}"
        record_failure(conn, task_name=contract.CHECKIN_BATCH, job_id=job_id,
                       payload=job.model_dump(mode="json"), reason=APPLY_FAILED, error=message, now=now)
        return Outcome.rejected(APPLY_FAILED, message, partner_id=job.partner_id)
