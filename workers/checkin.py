"""rewards.checkin: a partner checked in (queue `checkins`)."""

from datetime import datetime, timedelta

from rewards import contract
from rewards import settings as settings_module
from rewards.checkins import apply_checkin
from rewards.jobs import CheckinJob
from rewards.outcome import Outcome
from workers import app
from workers.base import LedgerTask


@app.task(name=contract.CHECKIN, base=LedgerTask, payload_model=CheckinJob)
def checkin(conn, job: CheckinJob, now: datetime) -> Outcome:
    current = settings_module.get()
    return apply_checkin(conn, job, current.policy, now=now,
                         future_tolerance=timedelta(seconds=current.future_tolerance_s))
