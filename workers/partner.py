"""rewards.partner.update: upstream changed a partner's plan or time zone (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.jobs import PartnerUpdateJob
from rewards.outcome import Outcome
from rewards.partners import apply_partner_update
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.PARTNER_UPDATE, base=LedgerTask, payload_model=PartnerUpdateJob)
def update_partner(conn, job: PartnerUpdateJob, now: datetime) -> Outcome:
    return apply_partner_update(conn, job, now=now)
