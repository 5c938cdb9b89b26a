"""A check-in batch on SQLite: savepoints and per-item results on the embedded default."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards.contract.payloads import CheckinBatchJob
from rewards.db import make_engine
from rewards.ledger.batches import apply_checkin_batch
from rewards.models import metadata
from rewards.rules import Policy
from tests.support.invariants import assert_invariants

START = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)


def test_a_batch_with_a_bad_item_and_shuffled_days_applies_the_rest_on_sqlite(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    days = [3, 0, 2, 1]
    items = [{"partner_id": 5, "occurred_at": (START + timedelta(days=day)).isoformat()} for day in days]
    items.insert(2, {"partner_id": 5, "occurred_at": "not a time"})
    batch = CheckinBatchJob(checkins=items)

    for delivery in ("first", "again"):
        with engine.begin() as conn:
            outcome = apply_checkin_batch(conn, batch, Policy(), now=START + timedelta(days=10),
                                          future_tolerance=timedelta(minutes=5), job_id=delivery)
        result = outcome.as_result()
        if delivery == "first":
            assert [item["status"] for item in result["items"]] == ["applied"] * 2 + ["rejected"] + ["applied"] * 2
            assert [item.get("streak") for item in result["items"]] == [4, 1, None, 3, 2]
        else:
            assert (result["status"], result["duplicate"], result["rejected"]) == ("duplicate", 4, 1)
    with engine.connect() as conn:
        assert conn.execute(text("SELECT xp, checkin_streak FROM partner WHERE id = 5")).one() == (40, 4)
        assert conn.execute(text("SELECT attempts FROM job_failure")).scalar_one() == 2
        assert_invariants(conn)
