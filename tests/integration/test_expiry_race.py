"""A check-in racing an expiry run, each order forced: whichever commits first, the check-in's streak stands.

Expiry reads the lost streaks, then resets them with a conditional UPDATE
(DESIGN.md 7). Each test makes one interleaving certain with locks it holds
and checks, through pg_blocking_pids, that the interleaving happened:

- the check-in commits after expiry has read the streak as lost but before
  its UPDATE runs: the UPDATE's condition no longer matches, nothing resets;
- expiry's reset commits first while the check-in waits behind it: the
  check-in then reads a streak of 0 and still continues it if its day allows.
"""

from datetime import date, datetime, time, timedelta, timezone

import pytest

from rewards import db
from rewards.contract.payloads import CheckinJob
from rewards.ledger.checkins import apply_checkin
from rewards.models import utcnow
from rewards.rules import Policy
from schedules import expire_streaks
from tests.support.database import partner_row
from tests.support.races import Background, Holder, backend_pid, blocked_by, holding_partners, patient_engine
from tests.support.streaks import events

UTC = timezone.utc
TODAY = date(2026, 2, 10)
EXPIRY_AT = datetime.combine(TODAY, time(12), tzinfo=UTC)
YESTERDAY = TODAY - timedelta(days=1)

# Today's check-in starts a new streak of 1; yesterday's, arriving late,
# continues the 3-day streak to 4 whatever expiry did meanwhile.
CHECKINS = [pytest.param(TODAY, 1, id="today"), pytest.param(YESTERDAY, 4, id="yesterday, late")]


def apply(conn, partner_id: int, day: date) -> dict:
    occurred_at = datetime.combine(day, time(23), tzinfo=UTC)
    job = CheckinJob(partner_id=partner_id, occurred_at=occurred_at.isoformat())
    return apply_checkin(conn, job, Policy(), now=utcnow(), future_tolerance=timedelta(minutes=5)).as_result()


def three_day_streak_two_days_old(partner_id: int) -> None:
    for days_ago in (4, 3, 2):
        with db.transaction() as conn:
            apply(conn, partner_id, TODAY - timedelta(days=days_ago))


def expire_patiently():
    return expire_streaks.run(patient_engine(), EXPIRY_AT, 4)


def checkin_patiently(partner_id: int, day: date) -> dict:
    with patient_engine().begin() as conn:
        return apply(conn, partner_id, day)


@pytest.mark.parametrize(("day", "streak_days"), CHECKINS)
def test_a_checkin_committing_between_expirys_read_and_its_reset_keeps_its_streak(conn, day, streak_days):
    three_day_streak_two_days_old(400)
    with patient_engine().connect() as checkin_conn:
        with checkin_conn.begin():
            assert apply(checkin_conn, 400, day)["status"] == "applied"   # the partner row is now locked
            expiry = Background("expiry", expire_patiently)
            waiting = Holder(checkin_conn, backend_pid(checkin_conn)).wait_for_waiters(
                1, "expiry to read the streak as lost and wait to reset it", expiry.failed)
            assert len(waiting) == 1
        # Committed: expiry's UPDATE now runs against the check-in's row.

    summary = expiry.result()
    assert (summary.examined, summary.changed) == (1, 0)
    row = partner_row(conn, 400)
    assert (row.checkin_streak, row.last_checkin_day) == (streak_days, day)
    assert events(conn, "streak.lost") == []


@pytest.mark.parametrize(("day", "streak_days"), CHECKINS)
def test_a_checkin_waiting_behind_expirys_reset_continues_from_what_the_reset_left(conn, day, streak_days):
    three_day_streak_two_days_old(401)
    with holding_partners(401) as holder:
        expiry = Background("expiry", expire_patiently)
        [expiry_pid] = holder.wait_for_waiters(1, "expiry to wait to reset the streak", expiry.failed)
        checkin = Background("check-in", lambda: checkin_patiently(401, day))
        waiting = holder.wait_for_waiters(2, "the check-in to queue behind expiry", checkin.failed)
        [checkin_pid] = set(waiting) - {expiry_pid}
        # The row's lock queue is first come, first served: expiry resets first.
        assert expiry_pid in blocked_by(checkin_pid)

    summary = expiry.result()
    assert (summary.examined, summary.changed) == (1, 1)
    assert checkin.result()["streak"] == streak_days
    row = partner_row(conn, 401)
    assert (row.checkin_streak, row.last_checkin_day) == (streak_days, day)
    [lost] = events(conn, "streak.lost", 401)
    assert lost.payload["lost_streak"] == 3
