"""rewards.checkin and rewards.checkin.batch: partners checked in (queue `checkins`)."""

from datetime import datetime, timedelta

from rewards import contract
from rewards import settings as settings_module
from rewards.contract.payloads import CheckinBatchJob, CheckinJob
from rewards.contract.results import Outcome
from rewards.ledger.batches import apply_checkin_batch
from rewards.ledger.checkins import apply_checkin
from workers import app
from workers.base import BatchTask, LedgerTask


@app.task(name=contract.CHECKIN, base=LedgerTask, payload_model=CheckinJob)
def checkin(conn, job: CheckinJob, now: datetime) -> Outcome:
    current = settings_module.get()
    return apply_checkin(conn, job, current.policy, now=now,
                         future_tolerance=timedelta(seconds=current.future_tolerance_s))


@app.task(name=contract.CHECKIN_BATCH, base=BatchTask, payload_model=CheckinBatchJob, items_field="checkins",
          item_job=contract.CHECKIN, bind=True)
def checkin_batch(self, conn, job: CheckinBatchJob, now: datetime) -> Outcome:
    current = settings_module.get()
    return apply_checkin_batch(conn, job, current.policy, now=now,
                               future_tolerance=timedelta(seconds=current.future_tolerance_s),
                               job_id=self.request.id)
