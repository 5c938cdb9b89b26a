"""The maintenance jobs (queue `maintenance`): thin shells over schedules/<job>.py.

Each parses its optional `now`, reads its limits from settings and calls the
job's `run`, which takes the advisory lock, works in batches and logs its
summary; the summary is the job's JSON result.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from celery import Task

from rewards import contract, db, sinks
from rewards import settings as settings_module
from rewards.jobs import parse_instant
from rewards.models import utcnow
from schedules import expire_streaks, reconcile, relay_outbox, streak_risk, sweep_stale_tasks
from workers import app


class MaintenanceTask(Task):
    # A failed run is not retried here: beat starts the next one on schedule,
    # and each run picks up whatever the last one left. The failure is still
    # recorded in job_failure by workers.base's task_failure handler.
    typing = False

    @staticmethod
    def instant(now: str | None) -> datetime:
        """The run's `now`: the given ISO-8601 instant, or the clock when beat sent none."""
        return utcnow() if now is None else parse_instant(now)


@app.task(name=contract.MAINTENANCE_EXPIRE_STREAKS, base=MaintenanceTask, bind=True)
def expire_streaks_job(self: MaintenanceTask, now: str | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return expire_streaks.run(db.get_engine(), self.instant(now), limits.batch_size,
                              limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_STREAK_RISK, base=MaintenanceTask, bind=True)
def streak_risk_job(self: MaintenanceTask, now: str | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return streak_risk.run(db.get_engine(), self.instant(now), limits.batch_size,
                           limits.streak_risk_hour, limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_RECONCILE, base=MaintenanceTask, bind=True)
def reconcile_job(self: MaintenanceTask, now: str | None = None, full: bool = False) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return reconcile.run(db.get_engine(), self.instant(now), limits.batch_size, full=bool(full),
                         lag_s=limits.reconcile_lag_s, max_batches=limits.max_batches).as_result()


@app.task(name=contract.MAINTENANCE_RELAY_OUTBOX, base=MaintenanceTask, bind=True)
def relay_outbox_job(self: MaintenanceTask, now: str | None = None) -> dict[str, Any]:
    current = settings_module.get()
    limits = current.maintenance
    sink = sinks.from_settings(current)
    try:
        return relay_outbox.run(db.get_engine(), self.instant(now), sink, relay_outbox.Limits(
            batch_size=limits.relay_batch_size, budget_s=limits.relay_budget_s,
            backoff_s_max=limits.relay_backoff_s_max, retention_days=limits.outbox_retention_days,
            max_batches=limits.max_batches,
        )).as_result()
    finally:
        sink.close()


@app.task(name=contract.MAINTENANCE_SWEEP_STALE_TASKS, base=MaintenanceTask, bind=True)
def sweep_stale_tasks_job(self: MaintenanceTask, now: str | None = None) -> dict[str, Any]:
    limits = settings_module.get().maintenance
    return sweep_stale_tasks.run(db.get_engine(), self.instant(now), limits.batch_size,
                                 limits.stale_task_days, limits.max_batches).as_result()
