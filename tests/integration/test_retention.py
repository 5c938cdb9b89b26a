"""Retention: audit months dropped whole past their retention, settled failure records deleted, as the retention role."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import exc, text

from rewards import contract, db
from rewards.models import utcnow
from tests.support.jobs import run

OLD_MONTH = "audit_event_p2020_01"
FAILURE = text("""
    INSERT INTO job_failure (fingerprint, task_name, payload, reason, error, first_seen_at, last_seen_at)
    VALUES (:fingerprint, 'rewards.checkin', '{}', :reason, 'e', :seen, :seen)
""")


def audit_row(conn, created_at: datetime) -> None:
    conn.execute(text("INSERT INTO audit_event (event_type, partner_id, payload, created_at)"
                      " VALUES ('checkin', 1, '{}', :t)"), {"t": created_at})


def partitions(conn) -> set[str]:
    return set(conn.execute(text("SELECT name FROM audit_event_partitions")).scalars())


@pytest.fixture
def old_month(admin_conn):
    """A month of audit rows from 2020, in a partition of its own, as years of running would leave."""
    admin_conn.execute(text(f"CREATE TABLE IF NOT EXISTS {OLD_MONTH} PARTITION OF audit_event"
                            " FOR VALUES FROM ('2020-01-01 00:00+00') TO ('2020-02-01 00:00+00')"))
    audit_row(admin_conn, datetime(2020, 1, 15, tzinfo=timezone.utc))
    yield
    admin_conn.execute(text(f"DROP TABLE IF EXISTS {OLD_MONTH}"))


def test_a_month_past_retention_is_dropped_whole_and_months_ahead_are_made(client, admin_conn, old_month):
    now = utcnow()
    audit_row(admin_conn, now - timedelta(days=1))
    result = run(client, contract.MAINTENANCE_RETENTION, now=now.isoformat())
    assert result["audit_months_dropped"] == [OLD_MONTH]
    assert OLD_MONTH not in partitions(admin_conn)
    kept = admin_conn.execute(text("SELECT created_at FROM audit_event")).scalars().all()
    assert kept == [now - timedelta(days=1)]
    for months in range(4):
        for table in ("audit_event", "xp_ledger"):
            assert month_covering(admin_conn, table, now + timedelta(days=31 * months)), (table, months)

    again = run(client, contract.MAINTENANCE_RETENTION, now=now.isoformat())
    assert again["audit_months_dropped"] == [] and again["audit_months_added"] == []
    assert again["ledger_months_added"] == []


def month_covering(conn, table: str, instant: datetime) -> str | None:
    """The monthly (not default) partition of `table` a row written at `instant` lands in."""
    return conn.execute(text(f"SELECT name FROM {table}_partitions WHERE upper_bound > :t"
                             " AND (lower_bound IS NULL OR lower_bound <= :t)"), {"t": instant}).scalar()


def test_no_month_younger_than_thirty_days_can_be_dropped_even_by_the_retention_role():
    with pytest.raises(exc.DBAPIError, match="kept at least 30 days"):
        with db.get_retention_engine().begin() as conn:
            conn.execute(text("SELECT * FROM audit_event_drop_partitions(now())"))


def test_the_worker_role_may_neither_drop_months_nor_delete_audit_rows():
    for statement in ("SELECT * FROM audit_event_drop_partitions('2020-02-01')",
                      "SELECT * FROM audit_event_add_partitions(now())",
                      "DELETE FROM audit_event"):
        with pytest.raises(exc.ProgrammingError, match="permission denied"):
            with db.get_engine().begin() as conn:
                conn.execute(text(statement))


def test_refused_messages_are_deleted_once_old_and_failures_to_re_drive_are_kept(client, admin_conn):
    now = utcnow()
    long_ago, lately = now - timedelta(days=31), now - timedelta(days=29)
    rows = {"refused-old": ("invalid_payload", long_ago), "refused-recent": ("not_permitted", lately),
            "exhausted-old": ("retries_exhausted", long_ago), "error-old": ("error", long_ago)}
    for fingerprint, (reason, seen) in rows.items():
        admin_conn.execute(FAILURE, {"fingerprint": fingerprint, "reason": reason, "seen": seen})
    result = run(client, contract.MAINTENANCE_RETENTION, now=now.isoformat())
    assert result["failures_deleted"] == 1
    kept = set(admin_conn.execute(text("SELECT fingerprint FROM job_failure")).scalars())
    assert kept == {"refused-recent", "exhausted-old", "error-old"}
