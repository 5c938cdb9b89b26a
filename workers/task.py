"""rewards.task.start and rewards.task.claim: catalogue tasks (queue `claims`)."""

from datetime import datetime, timedelta

from rewards import catalog, contract
from rewards import settings as settings_module
from rewards.contract.payloads import TaskClaimJob, TaskStartJob
from rewards.contract.results import Outcome
from rewards.ledger.quests import apply_task_claim, apply_task_start
from workers import app
from workers.base import LedgerTask


def _future_tolerance() -> timedelta:
    return timedelta(seconds=settings_module.get().future_tolerance_s)


@app.task(name=contract.TASK_START, base=LedgerTask, payload_model=TaskStartJob)
def start_task(conn, job: TaskStartJob, now: datetime) -> Outcome:
    return apply_task_start(conn, job, catalog.get(), now=now, future_tolerance=_future_tolerance())


@app.task(name=contract.TASK_CLAIM, base=LedgerTask, payload_model=TaskClaimJob)
def claim_task(conn, job: TaskClaimJob, now: datetime) -> Outcome:
    return apply_task_claim(conn, job, catalog.get(), settings_module.get().policy, now=now,
                            future_tolerance=_future_tolerance())
