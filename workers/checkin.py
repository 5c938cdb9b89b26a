"""rewards.checkin and rewards.checkin.batch: partners checked in (queue `checkins`)."""

from datetime import datetime, timedelta
from typing import Any

from rewards import contract
from rewards import settings as settings_module
from rewards.contract.payloads import CheckinBatchJob, CheckinJob, Job
from rewards.contract.results import INVALID_PAYLOAD, Outcome
from rewards.ledger.batches import apply_checkin_batch
from rewards.ledger.checkins import apply_checkin
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.CHECKIN, base=LedgerTask, payload_model=CheckinJob)
def checkin(conn, job: CheckinJob, now: datetime) -> Outcome:
    current = settings_module.get()
    return apply_checkin(conn, job, current.policy, now=now,
                         future_tolerance=timedelta(seconds=current.future_tolerance_s))


class CheckinBatchTask(LedgerTask):
    """A batch's envelope must also respect this deployment's REWARDS_BATCH_MAX."""

    def _validate(self, args: tuple, kwargs: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
        job, rejection = super()._validate(args, kwargs)
        batch_max = settings_module.get().batch_max
        if job is not None and len(job.checkins) > batch_max:
            problem = f"carries {len(job.checkins)} check-ins; at most {batch_max} (REWARDS_BATCH_MAX)"
            return None, Outcome.rejected(INVALID_PAYLOAD, f"checkins: {problem}",
                                          errors=[{"field": "checkins", "problem": problem}])
        return job, rejection


@app.task(name=contract.CHECKIN_BATCH, base=CheckinBatchTask, payload_model=CheckinBatchJob, bind=True)
def checkin_batch(self, conn, job: CheckinBatchJob, now: datetime) -> Outcome:
    current = settings_module.get()
    return apply_checkin_batch(conn, job, current.policy, now=now,
                               future_tolerance=timedelta(seconds=current.future_tolerance_s),
                               job_id=self.request.id)
