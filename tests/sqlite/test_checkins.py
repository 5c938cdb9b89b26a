"""The embedded default: the same ledger code on SQLite, no server needed."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards.contract.payloads import CheckinJob, PartnerUpdateJob
from rewards.db import make_engine
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.partners import apply_partner_update
from rewards.models import metadata
from rewards.rules import Policy
from tests.support.invariants import assert_invariants

START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


def test_thirty_pro_days_pay_4500_xp_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    now = START + timedelta(days=40)
    with engine.begin() as conn:
        apply_partner_update(conn, PartnerUpdateJob(partner_id=7, occurred_at=START.isoformat(),
                                                    pro_until="2030-01-01T00:00:00+00:00"), Policy(),
                             now=now, future_tolerance=timedelta(minutes=5))
    results = []
    for day in range(30):
        job = CheckinJob(partner_id=7, occurred_at=(START + timedelta(days=day)).isoformat())
        with engine.begin() as conn:
            results.append(apply_checkin(conn, job, Policy(), now=now, future_tolerance=timedelta(minutes=5)))
    with engine.begin() as conn:
        replay = apply_checkin(conn, CheckinJob(partner_id=7, occurred_at=START.isoformat()), Policy(),
                               now=now, future_tolerance=timedelta(minutes=5))
        assert conn.execute(text("SELECT xp FROM partner WHERE id = 7")).scalar() == 4_500
        assert_invariants(conn)

    assert [r.status for r in results] == ["applied"] * 30
    assert results[6].details.xp_granted == 800
    assert replay.status == "duplicate" and replay.details.xp_after == 50
    engine.dispose()
