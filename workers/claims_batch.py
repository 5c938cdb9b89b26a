"""rewards.claims.batch: many task starts, claims, referrals and partner updates in one message (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import ClaimsBatchJob
from rewards.contract.results import Outcome
from rewards.ledger.claims import apply_claims_batch
from workers import app
from workers.base import BatchTask


@app.task(name=contract.CLAIMS_BATCH, base=BatchTask, payload_model=ClaimsBatchJob, items_field="items", bind=True)
def claims_batch(self, conn, job: ClaimsBatchJob, now: datetime) -> Outcome:
    return apply_claims_batch(conn, job, now=now, job_id=self.request.id)
