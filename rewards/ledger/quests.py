"""Starting and claiming catalogue tasks: one live attempt at a time, each paid exactly once.

A start inserts the (partner, task, attempt) row. A claim moves that row from
STARTED to COMPLETED with one conditional `UPDATE … WHERE status = 'STARTED'
RETURNING`, in the same transaction as the credit, so of any number of
concurrent or redelivered claims exactly one pays; the others find the
attempt COMPLETED and answer `duplicate` with the original's details.

Progress and price come from `measure_progress` and `price`, which the read
side (`rewards.queries`) calls too: a preview is what the claim then pays.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from rewards import rules
from rewards.catalog import ACTION, REFERRAL, Catalog, CatalogTask
from rewards.contract import keys
from rewards.contract.payloads import TaskClaimJob, TaskJob, TaskStartJob
from rewards.contract.results import (
    ALREADY_COMPLETED,
    IN_FUTURE,
    NOT_STARTED,
    REQUIREMENT_NOT_MET,
    UNKNOWN_TASK,
    Outcome,
    TaskClaimResult,
    TaskStartResult,
    as_json,
)
from rewards.db import insert_ignoring_conflicts
from rewards.ledger import balance, outbox, plans
from rewards.models import checkin, partner_task, xp_ledger
from rewards.rules import Policy, Progress, TaskReward

STARTED, COMPLETED, EXPIRED = "STARTED", "COMPLETED", "EXPIRED"

_select_latest_attempt = (
    select(partner_task)
    .where(partner_task.c.partner_id == bindparam("partner_id"),
           partner_task.c.task_id == bindparam("task_id"))
    .order_by(partner_task.c.attempt.desc())
    .limit(1)
)
# Either key (the attempt, or "one live attempt") turns a second insert into a no-op.
_insert_attempt = insert_ignoring_conflicts(partner_task).returning(partner_task.c.attempt)
# (Bind names differ from column names: SQLAlchemy keeps those for SET values.)
_complete_attempt = (
    update(partner_task)
    .where(partner_task.c.partner_id == bindparam("b_partner_id"),
           partner_task.c.task_id == bindparam("b_task_id"),
           partner_task.c.attempt == bindparam("b_attempt"),
           partner_task.c.status == STARTED)
    .values(status=COMPLETED, completed_at=bindparam("b_completed_at"), multiplier=bindparam("b_multiplier"),
            xp_granted=bindparam("b_xp_granted"))
    .returning(partner_task.c.completed_at)
)
# The latest check-in since the start day with its streak, and how many check-in
# days there are since the start day (the window counts before LIMIT applies).
_select_action_metrics = (
    select(checkin.c.streak, func.count().over().label("checkin_days"))
    .where(checkin.c.partner_id == bindparam("partner_id"), checkin.c.day >= bindparam("start_day"))
    .order_by(checkin.c.day.desc())
    .limit(1)
)
_select_reward_row = select(xp_ledger).where(xp_ledger.c.idempotency_key == bindparam("key"))


def initial_metric_value(task: CatalogTask, state: Row) -> int:
    """What a start snapshots: the referral count for referral tasks, else nothing."""
    return state.referral_count if task.type == REFERRAL else 0


def measure_progress(conn: Connection, task: CatalogTask, state: Row, initial_metric: int,
                     start_day: date) -> Progress:
    """The progress of an attempt started on `start_day` with `initial_metric`, by the task's rule."""
    if task.type == REFERRAL:
        return rules.referral_progress(state.referral_count, initial_metric, task.requirement)
    if task.type == ACTION:
        latest = conn.execute(_select_action_metrics,
                              {"partner_id": state.id, "start_day": start_day}).first()
        if latest is None:
            return rules.action_progress(0, 0, task.requirement)
        return rules.action_progress(latest.streak, latest.checkin_days, task.requirement)
    return rules.social_progress()


def price(task: CatalogTask, pro: bool, policy: Policy) -> TaskReward:
    """What completing `task` pays, PRO or not at the claim's instant."""
    return rules.task_reward(task.reward_xp, pro, policy)


def apply_task_start(conn: Connection, job: TaskStartJob, catalog: Catalog, *, now: datetime,
                     future_tolerance: timedelta) -> Outcome:
    task = catalog.get(job.task_id)
    refusal = _refuse(job, task, catalog, now, future_tolerance)
    if refusal is not None:
        return refusal
    state = balance.lock_partner(conn, job.partner_id, now)
    latest = _latest_attempt(conn, job)
    refused = _start_refused(latest)
    if refused is not None:
        return refused
    row = {
        "partner_id": job.partner_id, "task_id": job.task_id,
        "attempt": 1 if latest is None else latest.attempt + 1, "status": STARTED,
        "initial_metric_value": initial_metric_value(task, state),
        "start_day": rules.local_day(job.occurred_at, state.timezone),
        "started_at": job.occurred_at, "completed_at": None,
    }
    if conn.execute(_insert_attempt, row).first() is None:
        # The partner lock makes this unreachable; the keys remain the last word.
        return _start_refused(_latest_attempt(conn, job))
    details = _start_details(row)
    balance.audit(conn, "task_start", job.partner_id, as_json(details), now)
    return Outcome.applied(keys.task_key(job.partner_id, job.task_id, row["attempt"]), details)


def _start_refused(latest: Row | None) -> Outcome | None:
    """Why an attempt cannot start now, or None when a new one may (none yet, or expired)."""
    if latest is None or latest.status == EXPIRED:
        return None
    key = keys.task_key(latest.partner_id, latest.task_id, latest.attempt)
    details = _start_details(latest._asdict())
    if latest.status == STARTED:
        return Outcome.duplicate(key, details, "already_started")
    return Outcome.rejected(ALREADY_COMPLETED,
                            f"task {latest.task_id!r} was already completed (attempt {latest.attempt})",
                            key=key, **as_json(details))


def apply_task_claim(conn: Connection, job: TaskClaimJob, catalog: Catalog, policy: Policy, *,
                     now: datetime, future_tolerance: timedelta) -> Outcome:
    task = catalog.get(job.task_id)
    refusal = _refuse(job, task, catalog, now, future_tolerance)
    if refusal is not None:
        return refusal
    if _latest_attempt(conn, job) is None:  # nothing started: write nothing, not even a partner
        return _not_started(job, None)
    state = balance.lock_partner(conn, job.partner_id, now)
    attempt = _latest_attempt(conn, job)
    if attempt.status == COMPLETED:
        return _duplicate_claim(conn, attempt)
    if attempt.status == EXPIRED:
        return _not_started(job, attempt)
    progress = measure_progress(conn, task, state, attempt.initial_metric_value, attempt.start_day)
    key = keys.task_key(job.partner_id, job.task_id, attempt.attempt)
    if not progress.met:
        return Outcome.rejected(
            REQUIREMENT_NOT_MET, f"task {task.task_id!r} needs {task.requirement}, progress is {progress}",
            key=key, task_id=task.task_id, attempt=attempt.attempt, progress=str(progress),
            current=progress.current, required=progress.required,
        )
    reward = price(task, plans.pro_at(conn, state, job.occurred_at), policy)
    completed = conn.execute(_complete_attempt, {
        "b_partner_id": job.partner_id, "b_task_id": job.task_id, "b_attempt": attempt.attempt,
        "b_completed_at": job.occurred_at, "b_multiplier": reward.multiplier, "b_xp_granted": reward.xp_granted,
    }).first()
    if completed is None:  # another claim of this attempt got there first
        return _duplicate_claim(conn, _latest_attempt(conn, job))
    return _pay(conn, job, task, attempt.attempt, reward, catalog, now)


def _pay(conn: Connection, job: TaskClaimJob, task: CatalogTask, attempt: int, reward: TaskReward,
         catalog: Catalog, now: datetime) -> Outcome:
    key = keys.task_key(job.partner_id, task.task_id, attempt)
    pro_note = f" (PRO ×{reward.multiplier})" if reward.multiplier > 1 else ""
    entry = balance.Entry("task_reward", reward.base_xp, reward.multiplier, key,
                         f"Task completed: {task.title}{pro_note}")
    xp_after = balance.credit(conn, job.partner_id, [entry], occurred_at=job.occurred_at,
                             rule_version=catalog.version, now=now)
    xp_before = xp_after - reward.xp_granted
    # Shaped like the reference document's audit example.
    completion = {
        "event": "task_completion", "partner_id": job.partner_id, "task_id": task.task_id,
        "attempt": attempt, "xp_before": xp_before, "xp_after": xp_after,
        "xp_granted": reward.xp_granted, "multiplier": reward.multiplier,
        "timestamp": job.occurred_at.isoformat(),
    }
    balance.audit(conn, "task_completion", job.partner_id, completion, now)
    outbox.emit(conn, outbox.TASK_COMPLETED, job.partner_id, completion, key=key, now=now)
    return Outcome.applied(key, _claim_details(job.partner_id, task.task_id, attempt, reward,
                                                 xp_after, completed_at=job.occurred_at))


def _refuse(job: TaskJob, task: CatalogTask | None, catalog: Catalog, now: datetime,
            future_tolerance: timedelta) -> Outcome | None:
    """Refusals that need no database: an unknown task, an instant ahead of the clock."""
    if task is None:
        return Outcome.rejected(UNKNOWN_TASK,
                                f"no task {job.task_id!r} in the catalogue ({catalog.version})",
                                task_id=job.task_id)
    if job.occurred_at > now + future_tolerance:
        return Outcome.rejected(
            IN_FUTURE,
            f"occurred_at {job.occurred_at.isoformat()} is ahead of the worker's clock "
            f"({now.isoformat()}) by more than {future_tolerance}; check the producer's clock",
            task_id=job.task_id,
        )
    return None


def _not_started(job: TaskJob, expired: Row | None) -> Outcome:
    if expired is None:
        message = f"task {job.task_id!r} was not started; start it before claiming"
        return Outcome.rejected(NOT_STARTED, message, task_id=job.task_id)
    message = f"attempt {expired.attempt} at task {job.task_id!r} expired; start it again"
    return Outcome.rejected(NOT_STARTED, message, key=keys.task_key(job.partner_id, job.task_id, expired.attempt),
                            task_id=job.task_id, attempt=expired.attempt)


def _duplicate_claim(conn: Connection, attempt: Row) -> Outcome:
    key = keys.task_key(attempt.partner_id, attempt.task_id, attempt.attempt)
    paid = conn.execute(_select_reward_row, {"key": key}).one()
    # The attempt's current price: a late PRO change may have re-priced it since.
    reward = TaskReward(attempt.xp_granted // attempt.multiplier, attempt.multiplier)
    return Outcome.duplicate(key, _claim_details(attempt.partner_id, attempt.task_id, attempt.attempt,
                                                 reward, paid.balance_after,
                                                 completed_at=attempt.completed_at))


def _latest_attempt(conn: Connection, job: TaskJob) -> Row | None:
    return conn.execute(_select_latest_attempt,
                        {"partner_id": job.partner_id, "task_id": job.task_id}).first()


def _start_details(row: dict[str, Any]) -> TaskStartResult:
    return TaskStartResult(
        partner_id=row["partner_id"], task_id=row["task_id"], attempt=row["attempt"],
        task_status=row["status"], initial_metric_value=row["initial_metric_value"],
        start_day=row["start_day"], started_at=row["started_at"],
    )


def _claim_details(partner_id: int, task_id: str, attempt: int, reward: TaskReward, xp_after: int,
                   completed_at: datetime) -> TaskClaimResult:
    return TaskClaimResult(
        partner_id=partner_id, task_id=task_id, attempt=attempt, base_xp=reward.base_xp,
        multiplier=reward.multiplier, xp_granted=reward.xp_granted,
        xp_before=xp_after - reward.xp_granted, xp_after=xp_after, completed_at=completed_at,
    )
