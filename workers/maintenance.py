"""The maintenance jobs (queue `maintenance`): thin shells over schedules/<job>.py.

Each validates its arguments (an optional `now`; `full` for reconcile), reads its limits from settings and calls the
job's `run`, which takes the advisory lock, works in batches and logs its
summary; the summary is the job's JSON result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Task

from rewards import contract, db, deadletters, leaderboards
from rewards import settings as settings_module
from rewards.contract.payloads import MaintenanceJob, ReconcileJob, validate_job
from rewards.contract.results import INVALID_PAYLOAD
from rewards.ledger.failures import record_failure
from rewards.models import utcnow
from schedules import (
    expire_streaks,
    reconcile,
    relay_outbox,
    sinks,
    streak_risk,
    sweep_stale_tasks,
    update_leaderboards,
)
from workers import app


class MaintenanceTask(Task):
    # A failed run is not retried here: beat starts the next one on schedule,
    # and each run picks up whatever the last one left. The failure is still
    # recorded in job_failure by workers.base's task_failure handler.
    typing = False
    payload_model: type[MaintenanceJob] = MaintenanceJob

    def __call__(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Arguments are validated as job payloads are: bad ones are `rejected` and recorded, not raised."""
        job, rejection = validate_job(self.payload_model, args, kwargs)
        if rejection is not None:
            with db.transaction() as conn:
                record_failure(conn, task_name=self.name, job_id=self.request.id,
                               payload={"args": list(args), "kwargs": kwargs} if args else kwargs,
                               reason=INVALID_PAYLOAD, error=rejection.message, now=utcnow())
            return rejection.as_result()
        return super().__call__(**dict(job))

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
        )).as_result()
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


@app.task(name=contract.MAINTENANCE_UPDATE_LEADERBOARDS, base=MaintenanceTask, bind=True)
def update_leaderboards_job(self: MaintenanceTask, now: str | None = None) -> dict[str, Any]:
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
