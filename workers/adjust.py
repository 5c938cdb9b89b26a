"""rewards.adjust: an operator grants or deducts XP (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.contract.payloads import AdjustmentJob
from rewards.contract.results import Outcome
from rewards.ledger.adjustments import apply_adjustment
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.ADJUST, base=LedgerTask, payload_model=AdjustmentJob)
def adjust(conn, job: AdjustmentJob, now: datetime) -> Outcome:
    return apply_adjustment(conn, job, now=now)
