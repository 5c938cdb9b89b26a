"""Bad input is rejected with a specific reason, recorded, never retried, never written."""

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rewards import contract
from tests.integration.conftest import RESULT_TIMEOUT_S, run

AT = "2026-06-01T10:00:00+00:00"


def counts(conn) -> dict[str, int]:
    return {table: conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar()
            for table in ("partner", "checkin", "xp_ledger")}


NOTHING_WRITTEN = {"partner": 0, "checkin": 0, "xp_ledger": 0}


@pytest.mark.parametrize(
    ("task_name", "kwargs", "field"),
    [
        (contract.CHECKIN, {"occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": 1}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT, "xp_granted": 10_000}, "xp_granted"),
        (contract.CHECKIN, {"partner_id": "1", "occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": 1.5, "occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": 0, "occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": -3, "occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": 2**64, "occurred_at": AT}, "partner_id"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "2026-06-01T10:00:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "June 1st"}, "occurred_at"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": AT, "timezone": "Mars/Olympus"}, "timezone"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": AT, "pro_until": "soon"}, "pro_until"),
    ],
)
def test_a_malformed_job_is_rejected_naming_the_field_and_nothing_is_written(client, conn, task_name, kwargs, field):
    sent = client.send(task_name, **kwargs)
    result = sent.get(timeout=RESULT_TIMEOUT_S)

    assert result["status"] == "rejected" and result["reason"] == "invalid_payload"
    assert field in [error["field"] for error in result["errors"]]
    assert field in result["message"]
    assert sent.retries == 0
    assert counts(conn) == NOTHING_WRITTEN
    failure = conn.execute(text("SELECT task_name, reason, attempts, payload FROM job_failure")).one()
    assert (failure.task_name, failure.reason, failure.attempts) == (task_name, "invalid_payload", 1)
    assert failure.payload == kwargs


def test_the_same_poison_job_delivered_again_is_one_failure_row_counting_attempts(client, conn):
    for _ in range(3):
        run(client, contract.CHECKIN, partner_id=-1, occurred_at=AT)
    assert conn.execute(text("SELECT attempts FROM job_failure")).scalars().all() == [3]


def test_positional_arguments_are_rejected(client, conn):
    result = client.app.send_task(contract.CHECKIN, args=[1, AT], queue="checkins").get(timeout=RESULT_TIMEOUT_S)
    assert result["status"] == "rejected" and result["reason"] == "invalid_payload"
    assert "keyword arguments" in result["message"]
    assert counts(conn) == NOTHING_WRITTEN


def test_a_checkin_from_the_future_is_rejected_and_audited(client, conn):
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    result = run(client, contract.CHECKIN, partner_id=21, occurred_at=tomorrow)
    assert (result["status"], result["reason"]) == ("rejected", "in_future")
    assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger")).scalar() == 0
    audit = conn.execute(text("SELECT payload FROM audit_event WHERE event_type = 'job.rejected'")).scalar_one()
    assert audit["reason"] == "in_future" and audit["payload"]["partner_id"] == 21


def test_a_checkin_for_a_day_before_the_last_one_is_rejected_out_of_order(client, conn):
    run(client, contract.CHECKIN, partner_id=22, occurred_at="2026-06-05T10:00:00+00:00")
    late = run(client, contract.CHECKIN, partner_id=22, occurred_at="2026-06-03T10:00:00+00:00")
    assert (late["status"], late["reason"]) == ("rejected", "out_of_order")
    assert "2026-06-05" in late["message"]
    assert conn.execute(text("SELECT xp FROM partner WHERE id = 22")).scalar() == 10
    reasons = conn.execute(text("SELECT payload->>'reason' FROM audit_event WHERE event_type = 'job.rejected'")).scalars().all()
    assert reasons == ["out_of_order"]
