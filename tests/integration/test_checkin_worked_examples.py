"""Worked examples from the reference document, through the real queue and database."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards import contract
from tests.support.database import partner_row
from tests.support.jobs import run

START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def checkin_on(client, partner_id: int, day_index: int) -> dict:
    at = START + timedelta(days=day_index)
    return run(client, contract.CHECKIN, partner_id=partner_id, occurred_at=at.isoformat())


def make_pro(client, partner_id: int) -> None:
    result = run(client, contract.PARTNER_UPDATE, partner_id=partner_id,
                 pro_until="2030-01-01T00:00:00+00:00", occurred_at=START.isoformat())
    assert result["status"] == "applied"


def test_thirty_consecutive_days_pay_900_xp_to_a_regular_partner(client, conn):
    results = [checkin_on(client, 1, day) for day in range(30)]
    assert [r["status"] for r in results] == ["applied"] * 30
    assert sum(r["xp_granted"] for r in results) == 900
    assert results[-1]["xp_after"] == 900 and results[-1]["streak"] == 30
    row = partner_row(conn, 1)
    assert (row.xp, row.checkin_streak, row.longest_streak, row.total_checkins) == (900, 30, 30, 30)


def test_thirty_consecutive_days_pay_4500_xp_to_a_pro_partner(client, conn):
    make_pro(client, 2)
    results = [checkin_on(client, 2, day) for day in range(30)]
    assert sum(r["xp_granted"] for r in results) == 4_500
    assert partner_row(conn, 2).xp == 4_500


def test_a_pro_partners_seventh_day_pays_800_xp_in_two_ledger_rows(client, conn):
    make_pro(client, 3)
    results = [checkin_on(client, 3, day) for day in range(7)]
    seventh = results[-1]
    assert (seventh["base_xp"], seventh["bonus_xp"], seventh["multiplier"], seventh["xp_granted"]) == (10, 150, 5, 800)
    assert seventh["xp_after"] == 6 * 50 + 800
    rows = conn.execute(text(
        "SELECT entry_type, base_amount, multiplier, amount, balance_after FROM xp_ledger "
        "WHERE partner_id = 3 ORDER BY id DESC LIMIT 2")).fetchall()
    assert [tuple(r) for r in rows] == [("streak_bonus", 150, 5, 750, 1100), ("checkin", 10, 5, 50, 350)]


def test_a_missed_day_resets_the_streak_to_one(client, conn):
    for day in (0, 1, 2):
        checkin_on(client, 4, day)
    after_gap = checkin_on(client, 4, 4)
    assert after_gap["streak"] == 1 and after_gap["xp_granted"] == 10
    row = partner_row(conn, 4)
    assert (row.checkin_streak, row.longest_streak) == (1, 3)


def test_day_fourteen_pays_the_bonus_again(client):
    results = [checkin_on(client, 5, day) for day in range(14)]
    assert [r["bonus_xp"] for r in results if r["bonus_xp"]] == [150, 150]
    assert results[13]["streak"] == 14 and results[13]["xp_granted"] == 160


def test_a_second_checkin_the_same_day_is_a_duplicate_with_the_original_details(client, conn):
    first = checkin_on(client, 6, 0)
    later_same_day = run(client, contract.CHECKIN, partner_id=6,
                         occurred_at=(START + timedelta(hours=5)).isoformat())
    assert first["status"] == "applied"
    assert later_same_day["status"] == "duplicate"
    for field in ("day", "streak", "xp_granted", "xp_after", "key"):
        assert later_same_day[field] == first[field]
    assert partner_row(conn, 6).xp == 10


def test_a_checkin_redelivered_after_a_later_day_is_still_a_duplicate(client):
    first = checkin_on(client, 7, 0)
    checkin_on(client, 7, 1)
    again = checkin_on(client, 7, 0)
    assert again["status"] == "duplicate" and again["xp_after"] == first["xp_after"]


def test_pro_is_decided_by_occurred_at_not_by_when_the_job_runs(client):
    run(client, contract.PARTNER_UPDATE, partner_id=8, occurred_at=START.isoformat(),
        pro_until=(START + timedelta(days=1, hours=6)).isoformat())
    first, second, third = (checkin_on(client, 8, day) for day in range(3))
    assert [first["multiplier"], second["multiplier"], third["multiplier"]] == [5, 5, 1]


def test_every_checkin_writes_an_audit_row_with_xp_before_and_after(client, conn):
    checkin_on(client, 9, 0)
    checkin_on(client, 9, 1)
    payloads = conn.execute(text(
        "SELECT payload FROM audit_event WHERE partner_id = 9 AND event_type = 'checkin' ORDER BY id")).scalars().all()
    assert [(p["xp_before"], p["xp_after"], p["xp_granted"]) for p in payloads] == [(0, 10, 10), (10, 20, 10)]
