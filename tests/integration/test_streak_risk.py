"""Streak-at-risk notices: one per partner per local day, late in that day, only for live streaks."""

from datetime import date, datetime, timezone

from rewards import contract, db
from schedules import streak_risk
from tests.support.jobs import run
from tests.support.streaks import checkin, events, set_partner

UTC = timezone.utc
MONDAY, TUESDAY = date(2026, 1, 12), date(2026, 1, 13)


def warn(now: datetime, risk_hour: int = 20):
    return streak_risk.run(db.get_engine(), now, 100, risk_hour)


def notified(conn) -> list[tuple[int, str]]:
    return [(e.partner_id, e.payload["local_day"]) for e in events(conn, "streak.at_risk")]


def test_a_partner_who_has_not_checked_in_is_warned_once_after_the_risk_hour(client, conn):
    checkin(client, 120, MONDAY)
    assert warn(datetime(2026, 1, 13, 19, 59, tzinfo=UTC)).changed == 0
    assert warn(datetime(2026, 1, 13, 20, 0, tzinfo=UTC)).changed == 1
    assert warn(datetime(2026, 1, 13, 23, 0, tzinfo=UTC)).changed == 0   # the key holds: once a day
    [notice] = events(conn, "streak.at_risk", 120)
    assert notice.idempotency_key == "streak_risk:120:2026-01-13"
    assert notice.payload == {"streak": 1, "local_day": "2026-01-13", "last_checkin_day": "2026-01-12",
                              "timezone": "UTC", "minutes_left": 240, "on_freeze": False}


def test_the_risk_hour_is_the_partners_own_evening(client, conn):
    set_partner(client, 121, zone="Asia/Tokyo")
    checkin(client, 121, MONDAY, "Asia/Tokyo")
    checkin(client, 122, MONDAY)
    warn(datetime(2026, 1, 13, 11, tzinfo=UTC))          # 20:00 in Tokyo, 11:00 in UTC
    assert notified(conn) == [(121, "2026-01-13")]


def test_partners_who_checked_in_today_or_already_lost_the_streak_are_not_warned(client, conn):
    checkin(client, 123, MONDAY)
    checkin(client, 123, TUESDAY)                         # checked in today
    checkin(client, 124, date(2026, 1, 11))               # missed Monday: nothing left to save
    warn(datetime(2026, 1, 13, 21, tzinfo=UTC))
    assert notified(conn) == []


def test_a_pro_partner_living_on_a_freeze_is_warned_that_it_is_the_last_chance(client, conn):
    set_partner(client, 125, pro=True)
    checkin(client, 125, date(2026, 1, 11))               # Monday missed, W03's freeze would bridge it
    warn(datetime(2026, 1, 13, 21, tzinfo=UTC))
    [notice] = events(conn, "streak.at_risk", 125)
    assert notice.payload["on_freeze"] is True


def test_the_streak_risk_job_runs_on_the_worker_with_an_injected_now(client, conn):
    checkin(client, 126, MONDAY)
    result = run(client, contract.MAINTENANCE_STREAK_RISK, now="2026-01-13T20:30:00+00:00")
    assert (result["examined"], result["changed"]) == (1, 1)
    assert notified(conn) == [(126, "2026-01-13")]
