"""After every run: nothing lost, nothing paid twice, invariants and reconcile clean."""

from __future__ import annotations

import redis
from sqlalchemy import text

from rewards import db
from rewards import settings as settings_module
from rewards.models import utcnow
from schedules import reconcile
from tests.support.database import truncate_tables
from tests.support.invariants import assert_invariants

_COUNTS = text("""
    SELECT (SELECT COUNT(*) FROM checkin) AS checkins,
           (SELECT COUNT(*) FROM xp_ledger WHERE entry_type = 'checkin') AS paid,
           (SELECT COUNT(*) FROM job_failure) AS failures
""")


def reset() -> None:
    """Empty the bench's own Redis numbers and database."""
    current = settings_module.get()
    for url in (current.broker_url, current.result_backend):
        redis.Redis.from_url(url).flushdb()
    with db.transaction() as conn:
        truncate_tables(conn)


def problems(expected_checkins: int) -> list[str]:
    """What is wrong with the database after `expected_checkins` distinct check-ins; [] if nothing."""
    found = []
    with db.get_engine().connect() as conn:
        counts = conn.execute(_COUNTS).one()
        try:
            assert_invariants(conn)
        except AssertionError as error:
            found.append(f"invariants: {error}")
    if counts.checkins != expected_checkins:
        found.append(f"{counts.checkins:,} check-ins applied of {expected_checkins:,}")
    if counts.paid != expected_checkins:
        found.append(f"{counts.paid:,} check-in ledger rows for {expected_checkins:,} check-ins")
    if counts.failures:
        found.append(f"{counts.failures:,} job_failure rows")
    summary = reconcile.run(db.get_engine(), utcnow(), 5_000, full=True, lag_s=0)
    if summary.details.get("mismatches"):
        found.append(f"reconcile: {summary.details['mismatches']} mismatches")
    return found
