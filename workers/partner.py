"""rewards.partner.update: upstream changed a partner's plan or time zone (queue `claims`)."""

from datetime import datetime, timedelta

from rewards import contract, settings
from rewards.contract.payloads import PartnerUpdateJob
from rewards.contract.results import Outcome
from rewards.ledger.partners import apply_partner_update
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.PARTNER_UPDATE, base=LedgerTask, payload_model=PartnerUpdateJob)
def update_partner(conn, job: PartnerUpdateJob, now: datetime) -> Outcome:
    current = settings.get()
    return apply_partner_update(conn, job, current.policy, now=now,
                                future_tolerance=timedelta(seconds=current.future_tolerance_s))
