"""rewards.referral.record: a partner referred a friend (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.jobs import ReferralJob
from rewards.outcome import Outcome
from rewards.referrals import apply_referral
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.REFERRAL_RECORD, base=LedgerTask, payload_model=ReferralJob)
def record_referral(conn, job: ReferralJob, now: datetime) -> Outcome:
    return apply_referral(conn, job, now=now)
