"""The embedded default: freezes, badges and the maintenance jobs also run on SQLite."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards import db
from rewards.contract.payloads import CheckinJob, PartnerUpdateJob
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.partners import apply_partner_update
from rewards.models import metadata, utcnow
from rewards.rules import Policy
from schedules import expire_streaks, reconcile, retention, streak_risk

UTC = timezone.utc
MONDAY_NOON = datetime(2026, 1, 5, 12, tzinfo=UTC)


def test_freeze_badge_expiry_risk_and_reconcile_work_on_sqlite(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    with engine.begin() as conn:
        apply_partner_update(conn, PartnerUpdateJob(partner_id=1, occurred_at="2025-12-01T00:00:00+00:00",
                                                    pro_until="2030-01-01T00:00:00+00:00"), Policy(),
                             now=utcnow(), future_tolerance=timedelta(minutes=5))
    for partner_id in (1, 2):
        for offset in (0, 1, 2, 3, 4, 5, 7):              # Sunday 11 January missed
            job = CheckinJob(partner_id=partner_id,
                             occurred_at=(MONDAY_NOON + timedelta(days=offset)).isoformat())
            with engine.begin() as conn:
                last = apply_checkin(conn, job, Policy(), now=utcnow(), future_tolerance=timedelta(minutes=5))
        assert (last.details.streak, last.details.frozen_days) == ((7, 1) if partner_id == 1 else (1, 0))

    assert streak_risk.run(engine, datetime(2026, 1, 13, 21, tzinfo=UTC), 10, 20).changed == 2
    assert expire_streaks.run(engine, datetime(2026, 1, 15, 1, tzinfo=UTC), 10).changed == 2
    clean = reconcile.run(engine, utcnow(), 10, full=True)
    assert (clean.examined, clean.details["mismatches"]) == (2, 0)
    with engine.begin() as conn:
        conn.execute(text("UPDATE partner SET xp = xp + 1 WHERE id = 2"))
    assert [m["partner_id"] for m in reconcile.run(engine, utcnow(), 10, full=True).details["found"]] == [2]
    with engine.connect() as conn:
        assert conn.execute(text("SELECT partner_id, badge FROM partner_badge")).fetchall() == [
            (1, "consistency_champion")]
        counts = dict(conn.execute(text("SELECT event_type, COUNT(*) FROM outbox GROUP BY event_type")).fetchall())
    assert counts == {"badge.awarded": 1, "checkin.milestone": 1, "streak.freeze_used": 1,
                      "streak.at_risk": 2, "streak.lost": 2, "reconciliation.mismatch": 1}
    engine.dispose()


def test_retention_deletes_old_audit_rows_and_settled_failures_on_sqlite(tmp_path):
    engine = db.make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    now = utcnow()
    with engine.begin() as conn:
        for days_ago in (91, 89):
            conn.execute(text("INSERT INTO audit_event (event_type, payload, created_at) VALUES ('x', '{}', :t)"),
                         {"t": now - timedelta(days=days_ago)})
        for reason in ("invalid_payload", "retries_exhausted"):
            conn.execute(text("INSERT INTO job_failure (fingerprint, task_name, payload, reason, error,"
                              " first_seen_at, last_seen_at) VALUES (:r, 'rewards.checkin', '{}', :r, 'e', :t, :t)"),
                         {"r": reason, "t": now - timedelta(days=31)})
    summary = retention.run(engine, now, retention.Limits(batch_size=1))
    assert (summary.details["audit_rows_deleted"], summary.details["failures_deleted"]) == (1, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM audit_event")).scalar_one() == 1
        assert conn.execute(text("SELECT reason FROM job_failure")).scalars().all() == ["retries_exhausted"]
    engine.dispose()
