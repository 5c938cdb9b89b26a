"""rewards.referral.record: a partner referred a friend (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import ReferralJob
from rewards.contract.results import Outcome
from rewards.ledger.claims import apply_claims_job
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.REFERRAL_RECORD, base=LedgerTask, payload_model=ReferralJob)
def record_referral(conn, job: ReferralJob, now: datetime) -> Outcome:
    return apply_claims_job(conn, contract.REFERRAL_RECORD, job, now=now)
