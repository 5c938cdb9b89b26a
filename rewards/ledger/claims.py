"""The claims queue's partner jobs, sent alone or many in one `rewards.claims.batch` message.

`apply_claims_job` is how a task start, a claim, a referral or a partner
update is applied, whether its message carried it alone (workers/task.py,
referral.py, partner.py) or in a batch.

A batch applies its items in the order sent, so one partner's start comes
before that partner's claim, in the job's one transaction. Each item is
validated on its own and keeps its own idempotency key: a bad item is
rejected alone, and a batch delivered twice finds every item already there
and pays nothing twice. The partners a batch names are locked first, in id
order, so two batches touching the same partners wait for each other
instead of deadlocking. Should the database refuse one item, the batch is
rolled back to a savepoint and applied again with each item in a savepoint
of its own, as for check-ins (rewards.ledger.batches).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.exc import DBAPIError

from rewards import catalog, contract, db, metrics
from rewards import settings as settings_module
from rewards.contract.payloads import (
    ClaimsBatchItem,
    ClaimsBatchJob,
    Job,
    PartnerUpdateJob,
    ReferralJob,
    TaskClaimJob,
    TaskStartJob,
    validate_job,
)
from rewards.contract.results import APPLY_FAILED, INVALID_PAYLOAD, REJECTED, BatchResult, Outcome
from rewards.ledger import balance
from rewards.ledger.failures import record_failure
from rewards.ledger.partners import apply_partner_update
from rewards.ledger.quests import apply_task_claim, apply_task_start
from rewards.ledger.referrals import apply_referral

Applier = Callable[[Connection, Any, datetime, settings_module.Settings], Outcome]


def _tolerance(current: settings_module.Settings) -> timedelta:
    return timedelta(seconds=current.future_tolerance_s)


JOBS: dict[str, tuple[type[Job], Applier]] = {
    contract.TASK_START: (TaskStartJob, lambda conn, job, now, current: apply_task_start(
        conn, job, catalog.get(), now=now, future_tolerance=_tolerance(current))),
    contract.TASK_CLAIM: (TaskClaimJob, lambda conn, job, now, current: apply_task_claim(
        conn, job, catalog.get(), current.policy, now=now, future_tolerance=_tolerance(current))),
    contract.REFERRAL_RECORD: (ReferralJob, lambda conn, job, now, current: apply_referral(
        conn, job, now=now, future_tolerance=_tolerance(current))),
    contract.PARTNER_UPDATE: (PartnerUpdateJob, lambda conn, job, now, current: apply_partner_update(
        conn, job, current.policy, now=now, future_tolerance=_tolerance(current))),
}
assert set(JOBS) == set(contract.CLAIMS_BATCH_JOBS)


def apply_claims_job(conn: Connection, name: str, job: Job, *, now: datetime) -> Outcome:
    """Apply one claims-queue job (`name` one of contract.CLAIMS_BATCH_JOBS) inside the caller's transaction."""
    return JOBS[name][1](conn, job, now, settings_module.get())


Item = tuple[int, str, Job]  # (position in the batch, job name, payload)


def apply_claims_batch(conn: Connection, batch: ClaimsBatchJob, *, now: datetime, job_id: str | None) -> Outcome:
    outcomes: list[Outcome | None] = [None] * len(batch.items)
    valid: list[Item] = []
    for index, item in enumerate(batch.items):
        name, job, rejection = validate_item(item)
        if rejection is None:
            valid.append((index, name, job))
        else:
            outcomes[index] = rejection
            record_failure(conn, task_name=contract.CLAIMS_BATCH, job_id=job_id, payload=item,
                           reason=INVALID_PAYLOAD, error=rejection.message, now=now)
    balance.lock_existing_partners(conn, [pid for _, _, job in valid for pid in partners_of(job)])
    try:
        with metrics.savepoint(conn):
            for index, name, job in valid:
                outcomes[index] = _apply(conn, name, job, now)
    except DBAPIError as error:
        if db.is_transient(error):
            raise
        for index, name, job in valid:
            outcomes[index] = _apply_alone(conn, name, job, now, job_id)
    return BatchResult.of(outcomes).outcome()


def validate_item(item: object) -> tuple[str | None, Job | None, Outcome | None]:
    """A batch item as its job's name and payload, or its rejection naming every field at fault."""
    envelope, rejection = validate_job(ClaimsBatchItem, (), item)
    if rejection is not None:
        return None, None, rejection
    if envelope.job not in JOBS:
        problem = (f"{envelope.job!r} cannot travel in {contract.CLAIMS_BATCH}; "
                   f"it carries {', '.join(contract.CLAIMS_BATCH_JOBS)}")
        return None, None, Outcome.rejected(INVALID_PAYLOAD, f"job: {problem}",
                                            errors=[{"field": "job", "problem": problem}])
    job, rejection = validate_job(JOBS[envelope.job][0], (), envelope.kwargs)
    return envelope.job, job, rejection


def partners_of(job: Job) -> tuple[int, ...]:
    if isinstance(job, ReferralJob):
        return job.referrer_id, job.referee_id
    return (job.partner_id,)


def _apply(conn: Connection, name: str, job: Job, now: datetime) -> Outcome:
    outcome = apply_claims_job(conn, name, job, now=now)
    if outcome.status == REJECTED:
        balance.audit(conn, "job.rejected", getattr(job, "partner_id", None), {
            "task": name, "reason": outcome.reason, "message": outcome.message,
            "key": outcome.key, "payload": job.model_dump(mode="json"),
        }, now)
    return outcome


def _apply_alone(conn: Connection, name: str, job: Job, now: datetime, job_id: str | None) -> Outcome:
    try:
        with metrics.savepoint(conn):
            return _apply(conn, name, job, now)
    except DBAPIError as error:
        # A lost connection or a lock timeout is the whole batch's to retry;
        # anything else the database refused belongs to this item alone.
        if db.is_transient(error):
            raise
        message = f"{type(error.orig).__name__}: {error.orig}"
        record_failure(conn, task_name=contract.CLAIMS_BATCH, job_id=job_id,
                       payload={"job": name, "kwargs": job.model_dump(mode="json")},
                       reason=APPLY_FAILED, error=message, now=now)
        return Outcome.rejected(APPLY_FAILED, message, partner_id=partners_of(job)[0])
