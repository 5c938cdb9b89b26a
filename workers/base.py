"""LedgerTask: the one place that owns a job's transaction and its retry decision.

A job body receives a validated payload and an open transaction and returns
an Outcome; it never commits, never retries and never catches. Here:

- a job is run only if it arrived through its own queue (`admit`): one
  that came through another is `rejected` / `not_permitted`, so an app that
  may write only to partner queues cannot run an operator's job;
- the payload is validated before anything is written; a bad one is a
  `rejected` result recorded in job_failure, never retried;
- the body runs in one transaction, committed only if it returns;
- an infrastructure fault (PostgreSQL down, hung or slow, a lock timeout, a
  soft time limit reached while waiting on it) is retried with capped
  exponential backoff and jitter over REWARDS_RETRY_HORIZON_S (an hour by
  default); if the retry cannot even be published (the broker is what
  failed) the message is handed back unacknowledged for redelivery;
- only a job that fails for a reason of its own, or outlives the horizon, is
  acknowledged as failed, and it is recorded first: in job_failure, or as a
  dead letter in Redis when PostgreSQL cannot take it (rewards.deadletters).

The task_failure handler at the bottom sees what the job could not record
itself (a hard time limit, a lost pool child). It runs in the worker's main
process for those, so it never touches the database: it keeps a dead letter.
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from functools import lru_cache
from typing import Any

from celery import Task, signals
from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded, TimeLimitExceeded

from rewards import contract, db, deadletters, metrics
from rewards import settings as settings_module
from rewards.contract.payloads import Job, validate_job
from rewards.contract.results import INVALID_PAYLOAD, NOT_PERMITTED, REJECTED, Outcome
from rewards.ledger import balance
from rewards.ledger.failures import record_failure, sanitise
from rewards.logs import log_event
from rewards.models import utcnow

logger = logging.getLogger("rewards.jobs")

BACKOFF_BASE_S = 0.5
RETRIES_EXHAUSTED = "retries_exhausted"
ERROR = "error"


def backoff_ceiling_s(retries: int, cap_s: float, base_s: float = BACKOFF_BASE_S) -> float:
    """The longest wait before retry number `retries + 1`: doubling from `base_s`, capped at `cap_s`."""
    # 2**retries overflows a float past ~1,000 retries; the cap is reached long before.
    return cap_s if retries >= 64 else min(cap_s, base_s * 2**retries)


def backoff_s(retries: int, cap_s: float, base_s: float = BACKOFF_BASE_S) -> float:
    """Seconds before retry number `retries + 1`: "equal jitter", between half the ceiling and all of it.

    Half the ceiling is always waited, so `retries_within(horizon)` retries
    are known to span at least the horizon; the random half spreads the
    retries of many jobs that failed together.
    """
    ceiling_s = backoff_ceiling_s(retries, cap_s, base_s)
    return random.uniform(ceiling_s / 2, ceiling_s)


@lru_cache(maxsize=16)
def retries_within(horizon_s: float, cap_s: float, base_s: float = BACKOFF_BASE_S) -> int:
    """How many retries it takes for the shortest possible waits to add up to `horizon_s`.

    With the defaults (an hour, 30 s cap, 0.5 s base) the ceiling reaches its
    cap at the 6th retry; the first six wait at least 15.75 s together and
    every later one at least 15 s, so 245 retries span the hour.
    """
    retries, waited_s = 0, 0.0
    while waited_s < horizon_s:
        waited_s += backoff_ceiling_s(retries, cap_s, base_s) / 2
        retries += 1
    return retries


def is_infrastructure_fault(error: BaseException) -> bool:
    """Faults of the parts around a job, not of the job: worth retrying until they pass.

    A soft time limit counts: every wait on PostgreSQL is bounded (connect,
    statement and lock timeouts, TCP user timeout), so a job that reaches its
    limit was waiting on a server that stopped answering.
    """
    return isinstance(error, SoftTimeLimitExceeded) or db.is_transient(error)


def arrival_refusal(task_name: str, delivery_info: dict | None) -> Outcome | None:
    """`not_permitted` unless the job arrived through its own queue.

    `delivery_info["exchange"]` is the broker's word on RabbitMQ and the
    consuming transport's on Redis and the embedded broker (rewards.transport);
    a job with no delivery at all (called in-process) is refused too.
    """
    expected = contract.queue_for(task_name)
    arrived = (delivery_info or {}).get("exchange")
    if arrived == expected:
        return None
    return Outcome.rejected(
        NOT_PERMITTED,
        f"{task_name} runs only when it arrives through the {expected!r} queue; it came through "
        f"{arrived or 'no queue'!r}. Send it with rewards.client, with credentials allowed to write "
        f"to {expected!r}",
        task=task_name, queue=arrived or None,
    )


def admit(task: Task, args: tuple, kwargs: dict[str, Any],
          validate) -> tuple[Job | None, Outcome | None]:
    """The job, if it came through its own queue and its payload is valid; else the refusal."""
    refusal = arrival_refusal(task.name, task.request.delivery_info)
    if refusal is not None:
        return None, refusal
    return validate(args, kwargs)


def record_refusal(task: Task, args: tuple, kwargs: dict[str, Any], refusal: Outcome, now: datetime) -> None:
    """Record a job refused before it ran (not permitted, invalid), in job_failure; nothing else is written."""
    with db.transaction() as conn:
        record_failure(conn, task_name=task.name, job_id=task.request.id,
                       payload={"args": list(args), "kwargs": kwargs} if args else kwargs,
                       reason=refusal.reason, error=refusal.message, now=now)


class LedgerTask(Task):
    payload_model: type[Job]
    # Payloads are checked by payload_model, not by Celery's signature check.
    typing = False

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        started = time.perf_counter()
        now = utcnow()
        try:
            outcome = self._apply(args, kwargs, now)
        except Exception as error:
            if is_infrastructure_fault(error):
                raise self._retry(error, kwargs) from error
            self._record(kwargs, ERROR, error)
            raise
        # From here on the effect is committed: a failure to store the result
        # must not be reported as the job's (see record_job_failure).
        self.request.rewards_committed = True
        took_s = time.perf_counter() - started
        metrics.count_job(self.name, outcome, took_s, sent_at=getattr(self.request, contract.SENT_AT_HEADER, None),
                          now_s=time.time(), item_jobs=self._item_jobs(kwargs))
        log_event(logger, logging.INFO, f"job.{outcome.status}", task=self.name,
                  job_id=self.request.id, key=outcome.key, reason=outcome.reason,
                  xp_granted=outcome.xp_granted, took_ms=round(took_s * 1000, 2))
        return outcome.as_result()

    def _apply(self, args: tuple, kwargs: dict[str, Any], now: datetime) -> Outcome:
        job, rejection = admit(self, args, kwargs, self._validate)
        if rejection is not None:
            record_refusal(self, args, kwargs, rejection, now)
            return rejection
        with metrics.xp_tally() as xp_written, db.transaction() as conn:
            outcome = self.run(conn, job, now=now)
            if outcome.status == REJECTED:
                # sanitise: a batch's items are not validated with its envelope,
                # so the job may still hold text PostgreSQL cannot store.
                balance.audit(conn, "job.rejected", getattr(job, "partner_id", None), sanitise({
                    "task": self.name, "reason": outcome.reason, "message": outcome.message,
                    "key": outcome.key, "payload": job.model_dump(mode="json"),
                }), now)
        metrics.count_xp(xp_written)
        return outcome

    def _item_jobs(self, kwargs: dict[str, Any]) -> list[str | None]:
        """The job name of each item, for a batch; nothing for a single job."""
        return []

    def _validate(self, args: tuple, kwargs: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
        return validate_job(self.payload_model, args, kwargs)

    def _retry(self, error: Exception, kwargs: dict[str, Any]) -> Exception:
        """The exception to raise for a fault that may pass: a Retry, a Reject, or the error itself."""
        current = settings_module.get()
        max_retries = retries_within(current.retry_horizon_s, current.retry_backoff_s_max)
        if self.request.retries >= max_retries:
            self._record(kwargs, RETRIES_EXHAUSTED, error)
            return error
        countdown_s = backoff_s(self.request.retries, current.retry_backoff_s_max)
        log_event(logger, logging.WARNING, "job.retry", task=self.name, job_id=self.request.id,
                  attempt=self.request.retries + 1, countdown_s=round(countdown_s, 2),
                  error=type(error).__name__, partner_id=kwargs.get("partner_id"))
        try:
            retry = self.retry(exc=error, countdown=countdown_s, max_retries=max_retries, throw=False)
        except Retry as raised:  # raised by retry() itself in some paths; it is what we want
            retry = raised
        except Exception as publish_error:
            # The retry could not be published: the broker is what failed. Hand
            # the message back; if even that cannot reach the broker, it stays
            # unacknowledged and is redelivered after the visibility timeout.
            log_event(logger, logging.WARNING, "job.requeued", task=self.name, job_id=self.request.id,
                      error=type(getattr(publish_error, "reason", publish_error)).__name__)
            metrics.count_requeue(self.name)
            return Reject(publish_error, requeue=True)
        metrics.count_retry(self.name, error)
        return retry

    def _record(self, kwargs: dict[str, Any], reason: str, error: BaseException) -> None:
        record_failure_anywhere(self.name, self.request.id, kwargs, reason, error, in_database=True)
        self.request.rewards_failure_recorded = True


class BatchTask(LedgerTask):
    """A batch job: its envelope must also respect this deployment's REWARDS_BATCH_MAX."""

    items_field: str  # the payload's list of items
    # The job each item is; None: the item names it in its "job" field.
    item_job: str | None = None

    def _validate(self, args: tuple, kwargs: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
        job, rejection = super()._validate(args, kwargs)
        batch_max = settings_module.get().batch_max
        if job is not None and len(items := getattr(job, self.items_field)) > batch_max:
            problem = f"carries {len(items)} items; at most {batch_max} (REWARDS_BATCH_MAX)"
            return None, Outcome.rejected(INVALID_PAYLOAD, f"{self.items_field}: {problem}",
                                          errors=[{"field": self.items_field, "problem": problem}])
        return job, rejection

    def _item_jobs(self, kwargs: dict[str, Any]) -> list[str | None]:
        items = kwargs.get(self.items_field)
        if not isinstance(items, list):
            return []
        return [self.item_job or (item.get("job") if isinstance(item, dict) else None) for item in items]


def record_failure_anywhere(task_name: str, job_id: str | None, payload: Any, reason: str,
                            error: BaseException, *, in_database: bool) -> None:
    """Record a failed job in job_failure, or as a dead letter when the database cannot take it.

    Never raises: a failure handler that fails would turn one lost record into
    a crashed worker. If neither PostgreSQL nor Redis answers, the log line is
    what remains.
    """
    message = f"{type(error).__name__}: {error}"
    now = utcnow()
    log_event(logger, logging.ERROR, "job.failed", task=task_name, job_id=job_id, reason=reason,
              error=message)
    if in_database:
        try:
            with db.transaction() as conn:
                record_failure(conn, task_name=task_name, job_id=job_id, payload=payload or {},
                               reason=reason, error=message, now=now)
            metrics.count_failure(task_name, reason, "database")
            return
        except Exception as db_error:  # noqa: BLE001 - the database may be what failed
            log_event(logger, logging.WARNING, "job_failure.dead_letter", task=task_name, job_id=job_id,
                      error=type(db_error).__name__)
    url = settings_module.get().dead_letter_url
    try:
        if url is None:
            raise RuntimeError("no REWARDS_DEAD_LETTER_URL and no redis:// broker to keep it in")
        deadletters.push(url, deadletters.DeadLetter.new(
            task_name=task_name, job_id=job_id, payload=payload or {}, reason=reason, error=message, now=now))
        metrics.count_failure(task_name, reason, "dead_letter")
    except Exception:  # noqa: BLE001
        logger.exception("event=job_failure.unrecorded task=%s job_id=%s", task_name, job_id)
        metrics.count_failure(task_name, reason, "log")


@signals.task_failure.connect
def record_job_failure(sender=None, task_id=None, exception=None, args=None, kwargs=None, **_):
    """Record what a job could not record itself; never touches the database (see the module doc)."""
    if sender is None or not sender.name.startswith("rewards."):
        return
    # Celery calls the job's id `task_id`; here it is a job_id.
    job_id = task_id
    request = sender.request
    if getattr(request, "rewards_failure_recorded", False):
        return
    if getattr(request, "rewards_committed", False):
        # The job committed; only storing its result failed. Its outcome is in
        # PostgreSQL (RewardsClient.outcome, `rewards job KEY`).
        log_event(logger, logging.WARNING, "job.result_unstored", task=sender.name, job_id=job_id,
                  error=type(exception).__name__)
        return
    if isinstance(exception, TimeLimitExceeded):
        # The hard limit: the message is handed back (task_acks_on_timeout is
        # off), so the job runs again; nothing to record.
        log_event(logger, logging.WARNING, "job.time_limit_requeued", task=sender.name, job_id=job_id)
        return
    reason = RETRIES_EXHAUSTED if is_infrastructure_fault(exception) else ERROR
    record_failure_anywhere(sender.name, job_id, kwargs, reason, exception, in_database=False)


def _message_payload(message: Any) -> Any:
    """What a message carried, as far as it can be decoded: {args, kwargs}, or its raw body as text."""
    try:
        body = message.decode()
    except Exception:  # noqa: BLE001 - any decoding failure: keep the bytes as text instead
        raw = message.body
        return {"raw_body": raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)}
    if isinstance(body, (list, tuple)) and len(body) == 3:  # Celery protocol 2: [args, kwargs, embed]
        return {"args": body[0], "kwargs": body[1]} if body[0] else body[1]
    return body


@signals.task_unknown.connect
def record_unknown_job(sender=None, message=None, name=None, **details):
    """A job under a name no worker runs is dropped by Celery after this signal: it is recorded first.

    Runs in the worker's main process, so it keeps a dead letter (moved to
    job_failure by the outbox relay), as record_job_failure does.
    """
    error = LookupError(f"no job is named {name!r}; the job names are listed in docs/contract.md, 'Job contract'")
    record_failure_anywhere(str(name), details.get("id"), _message_payload(message), "unknown_job", error,
                            in_database=False)


@signals.task_rejected.connect
def record_rejected_message(sender=None, message=None, exc=None, **_):
    """A message Celery cannot run (a refused format, malformed headers) is recorded before it is dropped."""
    headers = getattr(message, "headers", None) or {}
    error = exc if exc is not None else ValueError("not a Celery job message")
    record_failure_anywhere(str(headers.get("task") or "(no job name)"), headers.get("id"),
                            _message_payload(message), "invalid_message", error, in_database=False)
