"""Concurrent and duplicated delivery: no lost update, no double credit."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards import contract
from rewards.rules import Policy, checkin_reward
from tests.support.database import partner_row
from tests.support.jobs import run, run_all

START = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def test_the_same_checkin_enqueued_fifty_times_is_credited_once(client, conn):
    job = (contract.CHECKIN, {"partner_id": 77, "occurred_at": START.isoformat()})
    results = run_all(client, [job] * 50)
    statuses = [r["status"] for r in results]
    assert statuses.count("applied") == 1 and statuses.count("duplicate") == 49
    assert {r["xp_after"] for r in results} == {10}
    assert partner_row(conn, 77).xp == 10
    assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger WHERE partner_id = 77")).scalar() == 1


def test_a_thousand_checkins_for_a_hundred_partners_lose_no_update(client, conn):
    partners = range(1001, 1101)
    pro_partners = {pid for pid in partners if pid % 4 == 0}
    for pid in pro_partners:
        run(client, contract.PARTNER_UPDATE, partner_id=pid, occurred_at=START.isoformat(),
            pro_until="2030-01-01T00:00:00+00:00")
    # Day by day, every partner: a partner's next day is a hundred messages behind.
    jobs = [
        (contract.CHECKIN, {"partner_id": pid, "occurred_at": (START + timedelta(days=day)).isoformat()})
        for day in range(10) for pid in partners
    ]
    results = run_all(client, jobs)

    assert [r["status"] for r in results].count("applied") == 1_000
    policy = Policy()
    for pid in partners:
        expected = sum(checkin_reward(day, pid in pro_partners, policy).xp_granted for day in range(1, 11))
        row = partner_row(conn, pid)
        assert (row.xp, row.checkin_streak, row.total_checkins) == (expected, 10, 10), pid
    total = conn.execute(text("SELECT SUM(amount) FROM xp_ledger WHERE partner_id BETWEEN 1001 AND 1100")).scalar()
    assert total == 75 * 250 + 25 * 1_250
