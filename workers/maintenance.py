"""The maintenance jobs (queue `maintenance`): thin shells over schedules/<job>.py.

Each runs only when it arrived through the `maintenance` queue, validates
its arguments (an optional `now`, never ahead of the worker's clock; `full`
for reconcile), reads its limits from settings and calls the job's `run`,
which takes the advisory lock, works in batches and logs its summary; the
summary is the job's JSON result. A scheduled run that stopped at its batch
limit (`more`) sends the next run at once.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from celery import Task

from rewards import contract, db, deadletters, leaderboards
from rewards import settings as settings_module
from rewards.contract.payloads import MaintenanceJob, ReconcileJob, validate_job
from rewards.contract.results import IN_FUTURE, Outcome
from rewards.logs import log_event
from rewards.models import utcnow
from schedules import (
    expire_streaks,
    reconcile,
    relay_outbox,
    retention,
    sinks,
    streak_risk,
    sweep_stale_tasks,
    update_leaderboards,
)
from workers import app
from workers.base import admit, record_refusal

logger = logging.getLogger("rewards.maintenance")


class MaintenanceTask(Task):
    # A failed run is not retried here: beat starts the next one on schedule,
    # and each run picks up whatever the last one left. The failure is still
    # recorded in job_failure by workers.base's task_failure handler.
    typing = False
    payload_model: type[MaintenanceJob] = MaintenanceJob

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Run only what came through `maintenance` as of an instant that is not ahead of the clock.

        Refusals (wrong queue, bad arguments, a future `now`) are `rejected`
        and recorded, never raised.
        """
        now = utcnow()
        job, rejection = admit(self, args, kwargs, self._validate)
        if rejection is None:
            rejection = self._future_refusal(job, now)
        if rejection is not None:
            record_refusal(self, args, kwargs, rejection, now)
            log_event(logger, logging.WARNING, "maintenance.rejected", job=self.name, job_id=self.request.id,
                      reason=rejection.reason)
            return rejection.as_result()
        result = super().__call__(**dict(job))
        self._carry_on(job, result)
        return result

    def _carry_on(self, job: MaintenanceJob, result: dict[str, Any]) -> None:
        """A scheduled run that stopped at its batch limit sends the next one at once.

        So a tick with more work than one run may do is caught up in back-to-back
        runs, not one run per beat interval. Only runs beat sent (no `now`)
        carry on: a full reconcile goes round for ever, and an operator's replay
        is the operator's to repeat.
        """
        if not result.get("more") or job.now is not None or getattr(job, "full", False):
            return
        self.apply_async()
        log_event(logger, logging.INFO, "maintenance.continued", job=self.name, job_id=self.request.id)

    def _validate(self, args: tuple, kwargs: dict[str, Any]):
        return validate_job(self.payload_model, args, kwargs)

    @staticmethod
    def _future_refusal(job: MaintenanceJob, now: datetime) -> Outcome | None:
        # "As of 2199" would expire every streak and every started task: a
        # run may replay the past (an operator's catch-up), never the future.
        tolerance = timedelta(seconds=settings_module.get().future_tolerance_s)
        if job.now is None or job.now <= now + tolerance:
            return None
        return Outcome.rejected(
            IN_FUTURE,
            f"now {job.now.isoformat()} is ahead of the worker's clock ({now.isoformat()}) by more than "
            f"{tolerance} (REWARDS_FUTURE_TOLERANCE_S): a maintenance run may replay the past, never the future",
            now=job.now.isoformat(),
        )

    @staticmethod
    def instant(now: datetime | None) -> datetime:
        """The run's `now`: the instant it was given, or the clock when beat sent none."""
        return utcnow() if now is None else now


@app.task(name=contract.MAINTENANCE_EXPIRE_STREAKS, base=MaintenanceTask, bind=True)
def expire_streaks_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return expire_streaks.run(db.get_engine(), self.instant(now), limits.batch_size,
                              limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_STREAK_RISK, base=MaintenanceTask, bind=True)
def streak_risk_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return streak_risk.run(db.get_engine(), self.instant(now), limits.batch_size,
                           limits.streak_risk_hour, limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_RECONCILE, base=MaintenanceTask, bind=True, payload_model=ReconcileJob)
def reconcile_job(self: MaintenanceTask, now: datetime | None = None, full: bool = False) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return reconcile.run(db.get_engine(), self.instant(now), limits.batch_size, full=bool(full),
                         lag_s=limits.reconcile_lag_s, max_batches=limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_RELAY_OUTBOX, base=MaintenanceTask, bind=True)
def relay_outbox_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    current = settings_module.get()
    limits = current.maintenance
    sink = sinks.from_settings(current)
    try:
        result = relay_outbox.run(db.get_engine(), self.instant(now), sink, relay_outbox.Limits(
            batch_size=limits.relay_batch_size, budget_s=limits.relay_budget_s,
            backoff_s_max=limits.relay_backoff_s_max, retention_days=limits.outbox_retention_days,
            max_batches=limits.max_batches,
        ), retention_engine=db.get_retention_engine()).as_result()
    finally:
        sink.close()
    # The relay runs every few seconds: it is also what moves failure records
    # kept in Redis while PostgreSQL was away into job_failure, soon after it is back.
    if current.dead_letter_url:
        result["dead_letters_moved"] = deadletters.move_to_database(current.dead_letter_url, db.get_engine())
    return result


@app.task(name=contract.MAINTENANCE_SWEEP_STALE_TASKS, base=MaintenanceTask, bind=True)
def sweep_stale_tasks_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return sweep_stale_tasks.run(db.get_engine(), self.instant(now), limits.batch_size,
                                 limits.stale_task_days, limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_RETENTION, base=MaintenanceTask, bind=True)
def retention_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return retention.run(db.get_retention_engine(), self.instant(now), retention.Limits(
        audit_days=limits.audit_retention_days, failure_days=limits.failure_retention_days,
        batch_size=limits.batch_size, max_batches=limits.max_batches,
    )).as_result()


@app.task(name=contract.MAINTENANCE_UPDATE_LEADERBOARDS, base=MaintenanceTask, bind=True)
def update_leaderboards_job(self: MaintenanceTask, now: datetime | None = None) -> dict[str, Any]:
    current = settings_module.get()
    store = leaderboards.store_from_settings(timeout_s=10)
    if store is None:
        return {"job": contract.MAINTENANCE_UPDATE_LEADERBOARDS, "skipped": "REWARDS_REDIS_URL is not set"}
    try:
        return update_leaderboards.run(db.get_engine(), store, self.instant(now),
                                       batch_size=current.maintenance.batch_size,
                                       lag_s=update_leaderboards.lag_s(current),
                                       max_batches=current.maintenance.max_batches).as_result()
    finally:
        store.close()
