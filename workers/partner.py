"""rewards.partner.update: upstream changed a partner's plan or time zone (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import PartnerUpdateJob
from rewards.contract.results import Outcome
from rewards.ledger.claims import apply_claims_job
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.PARTNER_UPDATE, base=LedgerTask, payload_model=PartnerUpdateJob)
def update_partner(conn, job: PartnerUpdateJob, now: datetime) -> Outcome:
    return apply_claims_job(conn, contract.PARTNER_UPDATE, job, now=now)
