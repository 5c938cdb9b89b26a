"""LedgerTask: the one place that owns a job's transaction and its retry decision.

A job body receives a validated payload and an open transaction and returns
an Outcome; it never commits, never retries and never catches. Here:

- the payload is validated before anything is written; a bad one is a
  `rejected` result recorded in job_failure, never retried;
- the body runs in one transaction, committed only if it returns;
- a transient fault (lost connection, deadlock, lock timeout) is retried with
  exponential backoff and full jitter, a bounded number of times; a job that
  still fails, or fails for any other reason, lands in job_failure through the
  task_failure signal (which also sees failures Task.on_failure does not).
"""

from __future__ import annotations

import logging
import random
import time
from datetime import datetime
from typing import Any

from celery import Task, signals
from pydantic import ValidationError

from rewards import db, ledger
from rewards import settings as settings_module
from rewards.failures import record_failure
from rewards.jobs import Job, describe_errors
from rewards.logs import log_event
from rewards.models import utcnow
from rewards.outcome import INVALID_PAYLOAD, REJECTED, Outcome

logger = logging.getLogger("rewards.jobs")


def backoff_s(retries: int, cap_s: float, base_s: float = 0.5) -> float:
    """Seconds before retry number `retries + 1`: full jitter over an exponential ceiling."""
    ceiling_s = min(cap_s, base_s * 2**retries)
    return random.uniform(base_s / 2, max(base_s / 2, ceiling_s))


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
            if db.is_transient(error):
                raise self._retry(error, kwargs)
            raise
        log_event(logger, logging.INFO, f"job.{outcome.status}", task=self.name,
                  job_id=self.request.id, key=outcome.key, reason=outcome.reason,
                  xp_granted=outcome.details.get("xp_granted"),
                  took_ms=round((time.perf_counter() - started) * 1000, 2))
        return outcome.as_result()

    def _apply(self, args: tuple, kwargs: dict[str, Any], now: datetime) -> Outcome:
        job, rejection = self._validate(args, kwargs)
        if rejection is not None:
            with db.transaction() as conn:
                record_failure(conn, task_name=self.name, task_id=self.request.id,
                               payload={"args": list(args), "kwargs": kwargs} if args else kwargs,
                               reason=INVALID_PAYLOAD, error=rejection.message, now=now)
            return rejection
        with db.transaction() as conn:
            outcome = self.run(conn, job, now=now)
            if outcome.status == REJECTED:
                ledger.audit(conn, "job.rejected", getattr(job, "partner_id", None), {
                    "task": self.name, "reason": outcome.reason, "message": outcome.message,
                    "key": outcome.key, "payload": job.model_dump(mode="json"),
                }, now)
        return outcome

    def _validate(self, args: tuple, kwargs: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
        if args:
            return None, Outcome.rejected(
                INVALID_PAYLOAD, "positional arguments are not accepted; send keyword arguments",
                errors=[{"field": "(args)", "problem": f"{len(args)} positional argument(s) given"}],
            )
        try:
            return self.payload_model.model_validate(kwargs), None
        except ValidationError as error:
            errors = describe_errors(error)
            message = "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
            return None, Outcome.rejected(INVALID_PAYLOAD, message, errors=errors)

    def _retry(self, error: Exception, kwargs: dict[str, Any]):
        current = settings_module.get()
        countdown_s = backoff_s(self.request.retries, current.retry_backoff_s_max)
        log_event(logger, logging.WARNING, "job.retry", task=self.name, job_id=self.request.id,
                  attempt=self.request.retries + 1, countdown_s=round(countdown_s, 2),
                  error=type(error).__name__, partner_id=kwargs.get("partner_id"))
        return self.retry(exc=error, countdown=countdown_s, max_retries=current.job_max_retries)


@signals.task_failure.connect
def record_job_failure(sender=None, task_id=None, exception=None, args=None, kwargs=None, **_):
    """Every job that failed for good gets a job_failure row: nothing is dropped silently."""
    if sender is None or not sender.name.startswith("rewards."):
        return
    reason = "retries_exhausted" if db.is_transient(exception) else "error"
    error = f"{type(exception).__name__}: {exception}"
    log_event(logger, logging.ERROR, "job.failed", task=sender.name, job_id=task_id,
              reason=reason, error=error)
    try:
        with db.transaction() as conn:
            record_failure(conn, task_name=sender.name, task_id=task_id, payload=kwargs or {},
                           reason=reason, error=error, now=utcnow())
    except Exception:  # the database may be what failed; the log line above remains
        logger.exception("event=job_failure.unrecorded task=%s job_id=%s", sender.name, task_id)
