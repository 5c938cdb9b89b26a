"""rewards.adjust: an operator grants or deducts XP (queue `claims`)."""

from datetime import datetime

from rewards import contract
from rewards.adjustments import apply_adjustment
from rewards.jobs import AdjustmentJob
from rewards.outcome import Outcome
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.ADJUST, base=LedgerTask, payload_model=AdjustmentJob)
def adjust(conn, job: AdjustmentJob, now: datetime) -> Outcome:
    return apply_adjustment(conn, job, now=now)
