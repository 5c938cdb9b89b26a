"""Duplicated delivery at once: the check-in's key absorbs every copy, so nothing is credited twice.

One partner's distinct jobs running at the same time (lost updates) are
forced in test_partner_row_lock.py.
"""

from datetime import datetime, timezone

from sqlalchemy import text

from rewards import contract
from tests.support.database import partner_row
from tests.support.jobs import run_all

START = datetime(2026, 2, 1, 8, 0, tzinfo=timezone.utc)


def test_the_same_checkin_enqueued_fifty_times_is_credited_once(client, conn):
    job = (contract.CHECKIN, {"partner_id": 77, "occurred_at": START.isoformat()})
    results = run_all(client, [job] * 50)
    statuses = [r["status"] for r in results]
    assert statuses.count("applied") == 1 and statuses.count("duplicate") == 49
    assert {r["xp_after"] for r in results} == {10}
    assert partner_row(conn, 77).xp == 10
    assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger WHERE partner_id = 77")).scalar() == 1
