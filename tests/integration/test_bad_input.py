"""Bad input for every job is rejected with a specific reason, recorded, never retried, never written."""

import json
import time
from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rewards import contract, db, deadletters, settings
from tests.support.database import count
from tests.support.jobs import RESULT_TIMEOUT_S, at, run

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
        # The inputs that once were credited, lost or crashed the job:
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "0001-01-01T00:00:00+00:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "1970-01-01T00:00:00+00:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "2026-11-24T09:30:00\x00+00:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "0001-01-01T00:00+14:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "9999-12-31T23:59:59-14:00"}, "occurred_at"),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": "2026-W48-2T09:30:00+00:00"}, "occurred_at"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": AT, "timezone": "UTC\x00"}, "timezone"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": AT, "timezone": "Europe/\ud800"}, "timezone"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": AT,
                                   "pro_until": "9999-12-31T00:00:00+00:00"}, "pro_until"),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "occurred_at": "9999-12-31T23:59:59-14:00",
                                   "timezone": "UTC"}, "occurred_at"),
        (contract.TASK_START, {"partner_id": 1, "task_id": "telegram_bot\x00", "occurred_at": AT}, "task_id"),
        (contract.ADJUST, {"partner_id": 1, "amount": 5, "reason": "nul\x00inside", "request_id": "r-1"},
         "reason"),
        (contract.ADJUST, {"partner_id": 1, "amount": 5, "reason": "fine", "request_id": "lone \udc80"},
         "request_id"),
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
    failure = conn.execute(text("SELECT task_name, reason, attempts, payload, payload_text FROM job_failure")).one()
    assert (failure.task_name, failure.reason, failure.attempts) == (task_name, "invalid_payload", 1)
    # The exact payload survives as JSON text, whatever characters it held.
    assert json.loads(failure.payload_text) == kwargs


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


GOOD = {
    contract.TASK_START: {"partner_id": 60, "task_id": "telegram_bot", "occurred_at": at()},
    contract.TASK_CLAIM: {"partner_id": 60, "task_id": "telegram_bot", "occurred_at": at()},
    contract.REFERRAL_RECORD: {"referrer_id": 60, "referee_id": 61, "occurred_at": at()},
    contract.ADJUST: {"partner_id": 60, "amount": 100, "reason": "goodwill", "request_id": "r-60"},
}

BAD = [
    # (job, changes to its good payload, field named, reason)
    (contract.TASK_START, {"task_id": "no_such_task"}, None, "unknown_task"),
    (contract.TASK_CLAIM, {"task_id": "no_such_task"}, None, "unknown_task"),
    (contract.TASK_START, {"task_id": "Telegram-Bot"}, "task_id", "invalid_payload"),
    (contract.TASK_CLAIM, {"task_id": "x" * 65}, "task_id", "invalid_payload"),
    (contract.TASK_CLAIM, {"task_id": 7}, "task_id", "invalid_payload"),
    (contract.TASK_START, {"partner_id": "60"}, "partner_id", "invalid_payload"),
    (contract.TASK_CLAIM, {"partner_id": 0}, "partner_id", "invalid_payload"),
    (contract.TASK_CLAIM, {"occurred_at": "2026-03-02T09:00:00"}, "occurred_at", "invalid_payload"),
    (contract.TASK_START, {"occurred_at": "2099-01-01T00:00:00+00:00"}, None, "in_future"),
    (contract.REFERRAL_RECORD, {"occurred_at": "2099-01-01T00:00:00+00:00"}, None, "in_future"),
    (contract.TASK_CLAIM, {"xp": 5000}, "xp", "invalid_payload"),
    (contract.REFERRAL_RECORD, {"referee_id": -1}, "referee_id", "invalid_payload"),
    (contract.REFERRAL_RECORD, {"referrer_id": 1.5}, "referrer_id", "invalid_payload"),
    (contract.REFERRAL_RECORD, {"referee_id": 60}, None, "self_referral"),
    (contract.REFERRAL_RECORD, {"occurred_at": 1764000000}, "occurred_at", "invalid_payload"),
    (contract.ADJUST, {"amount": 0}, "amount", "invalid_payload"),
    (contract.ADJUST, {"amount": "100"}, "amount", "invalid_payload"),
    (contract.ADJUST, {"amount": 10**12}, "amount", "invalid_payload"),
    (contract.ADJUST, {"reason": ""}, "reason", "invalid_payload"),
    (contract.ADJUST, {"reason": "   "}, "reason", "invalid_payload"),
    (contract.ADJUST, {"reason": "r" * 201}, "reason", "invalid_payload"),
    (contract.ADJUST, {"request_id": "q" * 101}, "request_id", "invalid_payload"),
    (contract.ADJUST, {"request_id": None}, "request_id", "invalid_payload"),
]


@pytest.mark.parametrize(("job", "changes", "field", "reason"), BAD,
                         ids=[f"{job}-{'-'.join(changes)}-{reason}" for job, changes, _, reason in BAD])
def test_a_bad_job_is_rejected_with_a_reason_and_writes_nothing(client, conn, job, changes, field, reason):
    result = run(client, job, **{**GOOD[job], **changes})

    assert (result["status"], result["reason"]) == ("rejected", reason)
    assert result["message"]
    if field is not None:
        assert field in {error["field"] for error in result["errors"]}
    for table in ("partner", "partner_task", "referral", "adjustment", "xp_ledger"):
        assert count(conn, table) == 0, table


def test_a_partner_update_from_the_future_is_refused_so_it_cannot_supersede_later_updates(client, conn):
    future = (datetime.now(timezone.utc) + timedelta(days=400)).isoformat()
    refused = run(client, contract.PARTNER_UPDATE, partner_id=70, occurred_at=future, timezone="Asia/Tokyo")
    later = run(client, contract.PARTNER_UPDATE, partner_id=70, occurred_at=at(), timezone="Europe/Berlin")

    assert (refused["status"], refused["reason"]) == ("rejected", "in_future")
    assert later["status"] == "applied"
    assert conn.execute(text("SELECT timezone FROM partner WHERE id = 70")).scalar() == "Europe/Berlin"
    audit = conn.execute(text("SELECT payload FROM audit_event WHERE event_type = 'job.rejected'")).scalar_one()
    assert audit["reason"] == "in_future"


def test_a_job_under_an_unknown_name_is_recorded_in_job_failure(client, conn):
    client.app.send_task("rewards.checkn", kwargs={"partner_id": 1, "note": "nul\x00"}, queue="checkins")

    wait_for_rows(conn, "job_failure WHERE reason = 'unknown_job'")
    failure = conn.execute(text("SELECT task_name, payload, payload_text, error FROM job_failure")).one()
    assert failure.task_name == "rewards.checkn"
    assert failure.payload == {"partner_id": 1, "note": "nul\\u0000"}
    assert json.loads(failure.payload_text) == {"partner_id": 1, "note": "nul\x00"}
    assert "LookupError: no job is named 'rewards.checkn'" in failure.error


def test_a_message_in_a_refused_format_is_recorded_not_run(client, conn):
    # Only JSON is accepted on the wire: a pickled job is never unpickled.
    client.app.send_task(contract.CHECKIN, kwargs={"partner_id": 1, "occurred_at": AT}, queue="checkins",
                         serializer="pickle")

    wait_for_rows(conn, "job_failure WHERE reason = 'invalid_message'")
    failure = conn.execute(text("SELECT task_name, payload, error FROM job_failure")).one()
    assert failure.task_name == contract.CHECKIN
    assert "ContentDisallowed" in failure.error and "raw_body" in failure.payload
    assert count(conn, "checkin") == 0


@pytest.mark.parametrize("kwargs", [{"now": "yesterday"}, {"now": "0001-01-01T00:00:00+00:00"}, {"now": 5},
                                    {"full": "yes"}, {"when": "2026-06-01T00:00:00+00:00"}])
def test_a_maintenance_job_with_bad_arguments_is_rejected_and_recorded(client, conn, kwargs):
    name = contract.MAINTENANCE_RECONCILE
    result = client.send(name, **kwargs).get(timeout=RESULT_TIMEOUT_S)

    assert (result["status"], result["reason"]) == ("rejected", "invalid_payload")
    assert next(iter(kwargs)) in {error["field"] for error in result["errors"]}
    failure = conn.execute(text("SELECT task_name, reason FROM job_failure")).one()
    assert (failure.task_name, failure.reason) == (name, "invalid_payload")


def wait_for_rows(conn, table: str, timeout_s: float = RESULT_TIMEOUT_S) -> None:
    """Wait for a failure the worker's main process kept as a dead letter, moving dead letters as the relay does."""
    deadline = time.monotonic() + timeout_s
    while count(conn, table) == 0:
        assert time.monotonic() < deadline, f"no row in {table} after {timeout_s} s"
        deadletters.move_to_database(settings.get().dead_letter_url, db.get_engine())
        time.sleep(0.05)


def test_a_missing_field_is_named(client, conn):
    result = run(client, contract.TASK_CLAIM, partner_id=60, occurred_at=at())
    assert result["reason"] == "invalid_payload"
    assert result["errors"] == [{"field": "task_id", "problem": "Field required"}]
    assert count(conn, "job_failure WHERE task_name = 'rewards.task.claim'") == 1
