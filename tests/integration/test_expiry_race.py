"""A check-in racing an expiry run: whichever commits first, the check-in's streak stands."""

import threading
from datetime import date, datetime, time, timedelta, timezone

from rewards import db
from rewards.contract.payloads import CheckinJob
from rewards.ledger.checkins import apply_checkin
from rewards.models import utcnow
from rewards.rules import Policy
from schedules import expire_streaks
from tests.support.database import partner_row

UTC = timezone.utc
TODAY = date(2026, 2, 10)
ROUNDS = 5
PARTNERS_PER_ROUND = 24


def apply(partner_id: int, day: date, hour: int = 12) -> dict:
    job = CheckinJob(partner_id=partner_id,
                     occurred_at=datetime.combine(day, time(hour), tzinfo=UTC).isoformat())
    with db.transaction() as conn:
        return apply_checkin(conn, job, Policy(), now=utcnow(),
                             future_tolerance=timedelta(minutes=5)).as_result()


def race(partner_ids: list[int], checkin_day_of) -> None:
    """Start one expiry run and every partner's check-in at the same instant."""
    barrier = threading.Barrier(5)
    errors: list[BaseException] = []

    def guarded(work):
        def body():
            barrier.wait()
            try:
                work()
            except BaseException as error:  # surfaced by the assertion below
                errors.append(error)
        return body

    def expiry():
        expire_streaks.run(db.get_engine(), datetime.combine(TODAY, time(12), tzinfo=UTC), 4)

    def checkins(share):
        for partner_id in share:
            apply(partner_id, checkin_day_of(partner_id), hour=23)

    workers = [threading.Thread(target=guarded(expiry))]
    workers += [threading.Thread(target=guarded(lambda s=partner_ids[i::4]: checkins(s))) for i in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []


def test_a_checkin_racing_expiry_never_ends_with_a_reset_streak(conn):
    for round_number in range(ROUNDS):
        partner_ids = [1_000 * (round_number + 1) + n for n in range(PARTNERS_PER_ROUND)]
        for partner_id in partner_ids:
            for days_ago in (4, 3, 2):          # a 3-day streak whose last check-in is two days old
                apply(partner_id, TODAY - timedelta(days=days_ago))
        # Even ids check in today (a new streak of 1); odd ids send yesterday's
        # check-in late, which continues the streak to 4 whatever expiry did.
        race(partner_ids, lambda pid: TODAY if pid % 2 == 0 else TODAY - timedelta(days=1))
        for partner_id in partner_ids:
            row = partner_row(conn, partner_id)
            expected = (1, TODAY) if partner_id % 2 == 0 else (4, TODAY - timedelta(days=1))
            assert (row.checkin_streak, row.last_checkin_day) == expected, (round_number, partner_id)
