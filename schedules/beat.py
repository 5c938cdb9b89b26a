"""The whole beat schedule at a glance: `celery -A workers beat` (one per deployment).

Every interval comes from settings (REWARDS_*_EVERY_S). Every job runs on the
`maintenance` queue (the contract's router sends it there, without declaring
anything: beat may only write to that queue), and a message not started within its own interval
expires: if workers were down for a day, they find one run of each job
waiting, not a day's backlog of them. Overlapping runs are harmless anyway:
each job holds an advisory lock (schedules/runner.py).

A new job is one more row here and one task in workers/maintenance.py.
"""

from __future__ import annotations

from typing import Any

from rewards import contract
from rewards.settings import MaintenanceSettings


def _every_s(task_name: str, interval_s: int) -> dict[str, Any]:
    return {
        "task": task_name,
        "schedule": float(interval_s),
        "options": {"expires": float(interval_s)},
    }


def beat_schedule(every: MaintenanceSettings) -> dict[str, dict[str, Any]]:
    """The schedule for these settings; celeryconfig hands it to beat."""
    return {
        # job                task                                    every (default)
        "expire-streaks": _every_s(contract.MAINTENANCE_EXPIRE_STREAKS, every.expire_streaks_every_s),  # 1 h
        "streak-risk": _every_s(contract.MAINTENANCE_STREAK_RISK, every.streak_risk_every_s),           # 1 h
        "reconcile": _every_s(contract.MAINTENANCE_RECONCILE, every.reconcile_every_s),                 # 1 day
        "relay-outbox": _every_s(contract.MAINTENANCE_RELAY_OUTBOX, every.relay_outbox_every_s),        # 5 s
        "sweep-stale-tasks": _every_s(contract.MAINTENANCE_SWEEP_STALE_TASKS,
                                      every.sweep_stale_tasks_every_s),                                # 1 h
        "update-leaderboards": _every_s(contract.MAINTENANCE_UPDATE_LEADERBOARDS,
                                        every.update_leaderboards_every_s),                            # 5 s
        "retention": _every_s(contract.MAINTENANCE_RETENTION, every.retention_every_s),                 # 1 day
    }
