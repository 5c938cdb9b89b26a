"""rewards.task.start and rewards.task.claim: catalogue tasks (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import TaskClaimJob, TaskStartJob
from rewards.contract.results import Outcome
from rewards.ledger.claims import apply_claims_job
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.TASK_START, base=LedgerTask, payload_model=TaskStartJob)
def start_task(conn, job: TaskStartJob, now: datetime) -> Outcome:
    return apply_claims_job(conn, contract.TASK_START, job, now=now)


@app.task(name=contract.TASK_CLAIM, base=LedgerTask, payload_model=TaskClaimJob)
def claim_task(conn, job: TaskClaimJob, now: datetime) -> Outcome:
    return apply_claims_job(conn, contract.TASK_CLAIM, job, now=now)
