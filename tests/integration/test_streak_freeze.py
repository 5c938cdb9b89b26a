"""A PRO partner's single missed day is bridged once per ISO week, and every use is recorded."""

from datetime import date, timedelta

from sqlalchemy import text

from tests.support.database import partner_row
from tests.support.streaks import checkin, events, set_partner

MONDAY = date(2026, 1, 5)   # ISO week 2026-W02 runs Monday 5 to Sunday 11 January


def day(offset: int) -> date:
    return MONDAY + timedelta(days=offset)


def freezes(conn, partner_id: int) -> list[tuple]:
    return [tuple(row) for row in conn.execute(text(
        "SELECT iso_week, frozen_day, checkin_day FROM streak_freeze WHERE partner_id = :id ORDER BY iso_week"),
        {"id": partner_id})]


def test_a_pro_partner_missing_one_day_keeps_the_streak_without_the_frozen_day_adding_to_it(client, conn):
    set_partner(client, 40, pro=True)
    checkin(client, 40, day(0))
    checkin(client, 40, day(1))
    bridged = checkin(client, 40, day(3))          # Wednesday 7 January missed
    assert (bridged["status"], bridged["streak"], bridged["frozen_days"]) == ("applied", 3, 1)
    assert bridged["xp_granted"] == 50              # a frozen day pays nothing of its own
    assert freezes(conn, 40) == [("2026-W02", day(2), day(3))]
    frozen = conn.execute(text("SELECT frozen_days FROM checkin WHERE partner_id = 40 AND day = :d"),
                          {"d": day(3)}).scalar_one()
    assert frozen == 1
    [event] = events(conn, "streak.freeze_used", 40)
    assert event.payload == {"frozen_day": "2026-01-07", "iso_week": "2026-W02",
                             "checkin_day": "2026-01-08", "streak": 3}
    assert partner_row(conn, 40).checkin_streak == 3


def test_a_second_miss_in_the_same_iso_week_resets_the_streak(client, conn):
    set_partner(client, 41, pro=True)
    for offset in (0, 1, 3):                        # Wednesday bridged
        checkin(client, 41, day(offset))
    again = checkin(client, 41, day(5))             # Friday missed too: no freeze left in W02
    assert (again["streak"], again["frozen_days"]) == (1, 0)
    assert len(freezes(conn, 41)) == 1
    assert len(events(conn, "streak.freeze_used", 41)) == 1


def test_the_next_iso_week_brings_a_new_freeze(client, conn):
    set_partner(client, 42, pro=True)
    for offset in (0, 2, 5, 6):                     # Tuesday bridged; Wednesday and Thursday reset it
        checkin(client, 42, day(offset))
    next_week = checkin(client, 42, day(8))         # Monday 12 January (W03) missed
    assert (next_week["streak"], next_week["frozen_days"]) == (3, 1)
    assert [week for week, _, _ in freezes(conn, 42)] == ["2026-W02", "2026-W03"]


def test_a_regular_partner_missing_one_day_starts_again(client, conn):
    checkin(client, 43, day(0))
    checkin(client, 43, day(1))
    after_gap = checkin(client, 43, day(3))
    assert (after_gap["streak"], after_gap["frozen_days"]) == (1, 0)
    assert freezes(conn, 43) == []
    assert events(conn, "streak.freeze_used", 43) == []


def test_a_bridged_checkin_delivered_twice_uses_one_freeze(client, conn):
    set_partner(client, 44, pro=True)
    checkin(client, 44, day(0))
    first = checkin(client, 44, day(2))
    again = checkin(client, 44, day(2))
    assert (first["status"], again["status"]) == ("applied", "duplicate")
    assert again["frozen_days"] == 1 and again["streak"] == 2
    assert len(freezes(conn, 44)) == 1 and len(events(conn, "streak.freeze_used", 44)) == 1
