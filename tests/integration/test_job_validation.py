"""Bad input for every job is refused with a reason before anything is written."""

import pytest

from rewards import contract
from tests.integration.conftest import run
from tests.integration.helpers import at, count

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


def test_a_missing_field_is_named(client, conn):
    result = run(client, contract.TASK_CLAIM, partner_id=60, occurred_at=at())
    assert result["reason"] == "invalid_payload"
    assert result["errors"] == [{"field": "task_id", "problem": "Field required"}]
    assert count(conn, "job_failure WHERE task_name = 'rewards.task.claim'") == 1
