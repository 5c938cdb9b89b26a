"""Streak expiry: lost streaks go to 0 in each partner's own time zone, freezes honoured."""

from datetime import date, datetime, timedelta, timezone

from rewards import contract, db
from schedules import expire_streaks
from schedules.runner import LOCK_HELD
from tests.support.database import partner_row
from tests.support.jobs import run
from tests.support.races import (
    Background,
    advisory_lock_holders,
    holding_partners,
    patient_engine,
    without_waiting,
)
from tests.support.streaks import checkin, events, set_partner

UTC = timezone.utc
FRIDAY, SATURDAY = date(2026, 1, 9), date(2026, 1, 10)   # ISO week 2026-W02


def expire(now: datetime, batch_size: int = 100):
    return expire_streaks.run(db.get_engine(), now, batch_size)


def two_day_streak(client, partner_id: int, zone: str = "UTC", pro: bool = False) -> None:
    set_partner(client, partner_id, pro=pro, zone=zone)
    checkin(client, partner_id, FRIDAY, zone)
    assert checkin(client, partner_id, SATURDAY, zone)["streak"] == 2


def streaks(conn, *partner_ids: int) -> list[int]:
    return [partner_row(conn, partner_id).checkin_streak for partner_id in partner_ids]


def test_a_tokyo_partner_loses_a_streak_hours_before_a_los_angeles_partner(client, conn):
    two_day_streak(client, 60, "Asia/Tokyo")
    two_day_streak(client, 61, "America/Los_Angeles")
    # 16:00 UTC on Sunday 11 January is already 01:00 on Monday in Tokyo, but
    # only 08:00 on Sunday in Los Angeles: Tokyo has missed Sunday, LA has not.
    first = expire(datetime(2026, 1, 11, 16, tzinfo=UTC))
    assert streaks(conn, 60, 61) == [0, 2]
    assert first.changed == 1
    # 09:00 UTC on Monday is 01:00 on Monday in Los Angeles.
    expire(datetime(2026, 1, 12, 9, tzinfo=UTC))
    assert streaks(conn, 60, 61) == [0, 0]
    assert [e.payload["local_day"] for e in events(conn, "streak.lost")] == ["2026-01-12", "2026-01-12"]
    assert partner_row(conn, 60).longest_streak == 2


def test_a_pro_partner_with_a_freeze_left_survives_one_missed_day_but_not_two(client, conn):
    two_day_streak(client, 62, pro=True)
    two_day_streak(client, 63)
    expire(datetime(2026, 1, 12, 0, 30, tzinfo=UTC))     # Sunday missed
    assert streaks(conn, 62, 63) == [2, 0]
    expire(datetime(2026, 1, 13, 0, 30, tzinfo=UTC))     # Monday missed as well
    assert streaks(conn, 62, 63) == [0, 0]


def test_a_pro_partner_who_used_the_weeks_freeze_loses_the_streak_on_the_next_miss(client, conn):
    set_partner(client, 64, pro=True)
    checkin(client, 64, date(2026, 1, 5))
    assert checkin(client, 64, date(2026, 1, 7))["frozen_days"] == 1   # Tuesday bridged (W02)
    checkin(client, 64, date(2026, 1, 8))
    expire(datetime(2026, 1, 10, 1, tzinfo=UTC))         # Friday missed, W02's freeze is gone
    assert streaks(conn, 64) == [0]


def test_a_pro_partner_keeps_the_streak_when_the_missed_day_falls_in_a_fresh_week(client, conn):
    set_partner(client, 65, pro=True)
    checkin(client, 65, date(2026, 1, 5))
    checkin(client, 65, date(2026, 1, 7))                # W02's freeze used on Tuesday
    checkin(client, 65, date(2026, 1, 10))
    checkin(client, 65, date(2026, 1, 11))
    expire(datetime(2026, 1, 13, 1, tzinfo=UTC))         # Monday 12 (W03) missed: W03's freeze
    assert streaks(conn, 65) == [2]


def test_a_second_run_changes_nothing_and_each_loss_is_reported_once(client, conn):
    two_day_streak(client, 66)
    now = datetime(2026, 1, 15, tzinfo=UTC)
    first, second = expire(now), expire(now + timedelta(hours=1))
    assert (first.changed, second.changed) == (1, 0)
    [lost] = events(conn, "streak.lost", 66)
    assert lost.payload == {"lost_streak": 2, "last_checkin_day": "2026-01-10",
                            "local_day": "2026-01-15", "missed_days": 4}


def test_expiry_works_through_partners_in_bounded_batches(client, conn):
    for partner_id in range(70, 77):
        checkin(client, partner_id, SATURDAY)
    summary = expire(datetime(2026, 1, 20, tzinfo=UTC), batch_size=3)
    assert (summary.examined, summary.changed, summary.batches, summary.more) == (7, 7, 3, False)
    limited = expire_streaks.run(db.get_engine(), datetime(2026, 1, 20, tzinfo=UTC), 3, max_batches=1)
    assert (limited.examined, limited.changed) == (0, 0)


def test_the_expiry_job_runs_on_the_worker_with_an_injected_now(client, conn):
    two_day_streak(client, 67)
    result = run(client, contract.MAINTENANCE_EXPIRE_STREAKS, now="2026-01-12T12:00:00+00:00")
    assert (result["job"], result["examined"], result["changed"], result["skipped"]) == (
        contract.MAINTENANCE_EXPIRE_STREAKS, 1, 1, None)
    assert result["now"] == "2026-01-12T12:00:00+00:00" and result["took_ms"] >= 0
    assert streaks(conn, 67) == [0]


def test_a_late_checkin_for_yesterday_continues_a_streak_expiry_already_reset(client, conn):
    two_day_streak(client, 68)
    expire(datetime(2026, 1, 12, 0, 5, tzinfo=UTC))      # Sunday looks missed at 00:05 on Monday
    assert streaks(conn, 68) == [0]
    # Sunday's check-in happened at 23:59 and reached a worker late: occurred_at decides.
    late = run(client, contract.CHECKIN, partner_id=68, occurred_at="2026-01-11T23:59:00+00:00")
    assert (late["status"], late["streak"]) == ("applied", 3)
    assert streaks(conn, 68) == [3]


def test_a_run_that_finds_the_lock_held_skips_and_changes_nothing(client, conn):
    two_day_streak(client, 69)
    with db.advisory_lock(db.get_engine(), contract.MAINTENANCE_EXPIRE_STREAKS) as acquired:
        assert acquired
        skipped = expire(datetime(2026, 1, 20, tzinfo=UTC))
    assert (skipped.skipped, skipped.examined, skipped.changed) == (LOCK_HELD, 0, 0)
    assert streaks(conn, 69) == [2]
    assert expire(datetime(2026, 1, 20, tzinfo=UTC)).changed == 1


def test_a_run_started_while_another_is_resetting_skips_and_the_first_resets_each_streak_once(client, conn):
    partner_ids = range(80, 110)
    for partner_id in partner_ids:
        checkin(client, partner_id, SATURDAY)
    now = datetime(2026, 1, 20, tzinfo=UTC)
    # The test holds every partner row, so the first run stops at its first
    # reset, inside its advisory lock, for as long as the test likes.
    with holding_partners(*partner_ids) as holder:
        first = Background("the first run", lambda: expire_streaks.run(patient_engine(), now, 5))
        holder.wait_for_waiters(1, "the first run to wait on its first reset", first.failed)
        # The run holds its advisory lock on a session of its own, beside the batch's.
        [lock_holder] = advisory_lock_holders(contract.MAINTENANCE_EXPIRE_STREAKS)
        second = without_waiting("the second run", lambda: expire(now))
        assert (second.skipped, second.examined, second.changed, second.batches) == (LOCK_HELD, 0, 0, 0)
        assert advisory_lock_holders(contract.MAINTENANCE_EXPIRE_STREAKS) == [lock_holder]
        assert set(streaks(conn, *partner_ids)) == {1} and events(conn, "streak.lost") == []
    summary = first.result()
    assert (summary.skipped, summary.examined, summary.changed) == (None, 30, 30)
    assert len(events(conn, "streak.lost")) == len(partner_ids)
    assert set(streaks(conn, *partner_ids)) == {0}
