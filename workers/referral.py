"""rewards.referral.record: a partner referred a friend (queue `claims`)."""

from datetime import datetime, timedelta

from rewards import contract
from rewards import settings as settings_module
from rewards.contract.payloads import ReferralJob
from rewards.contract.results import Outcome
from rewards.ledger.referrals import apply_referral
from workers import app
from workers.base import LedgerTask


def _future_tolerance() -> timedelta:
    return timedelta(seconds=settings_module.get().future_tolerance_s)


@app.task(name=contract.REFERRAL_RECORD, base=LedgerTask, payload_model=ReferralJob)
def record_referral(conn, job: ReferralJob, now: datetime) -> Outcome:
    return apply_referral(conn, job, now=now, future_tolerance=_future_tolerance())
