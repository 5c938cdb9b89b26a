"""Fuzzed payloads through the real broker and worker: each is rejected, recorded, and writes nothing.

For every job (and the maintenance jobs' arguments), hypothesis takes a well-formed payload and breaks it: a field
replaced by random JSON that is not a valid value for it, a required field
removed, an unknown key added, positional arguments sent. Each such job must
come back `rejected` with a reason, be recorded (a job_failure row or a
`job.rejected` audit event), leave every table of the ledger empty, and not
be retried. Hypothesis prints the failing example, which replays it exactly.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from rewards import contract
from tests.support.database import count
from tests.support.jobs import RESULT_TIMEOUT_S, at

LEDGER_TABLES = ("partner", "xp_ledger", "checkin", "partner_task", "referral", "adjustment")
REASONS = {"invalid_payload", "unknown_task", "in_future", "self_referral", "all_rejected"}
MAX_BIGINT = 2**63 - 1

json_scalars = (st.none() | st.booleans()
                | st.integers(min_value=-(10**300), max_value=10**300)
                | st.floats(allow_nan=True, allow_infinity=True)
                | st.text(st.characters(codec=None, exclude_categories=()), max_size=80)
                | st.text(max_size=300))
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)


# What a valid value is, field by field, written from the contract (docs/contract.md)
# and not from the payload models: the fuzz must only send values the
# contract refuses.
def _positive_id(value: Any) -> bool:
    return type(value) is int and 0 < value <= MAX_BIGINT


def _instant_like(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)", value) is not None


def _zone(value: Any) -> bool:
    try:
        ZoneInfo(value)
        return True
    except Exception:  # anything zoneinfo refuses is not a zone
        return False


def _text(limit: int):
    def valid(value: Any) -> bool:
        return (isinstance(value, str) and 0 < len(value) <= limit and bool(value.strip())
                and not any(unicodedata.category(char) in ("Cc", "Cs") for char in value))
    return valid


def _amount(value: Any) -> bool:
    return type(value) is int and value != 0 and abs(value) <= 10**9


def _task_id(value: Any) -> bool:
    return isinstance(value, str) and re.fullmatch(r"[a-z0-9_]{1,64}", value) is not None


JOBS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    # job: (a well-formed payload, {field: is a value valid for it})
    contract.CHECKIN: ({"partner_id": 1, "occurred_at": at()},
                       {"partner_id": _positive_id, "occurred_at": _instant_like}),
    contract.PARTNER_UPDATE: ({"partner_id": 1, "occurred_at": at(), "timezone": "Asia/Tokyo"},
                              {"partner_id": _positive_id, "occurred_at": _instant_like,
                               "timezone": _zone, "pro_until": lambda v: v is None or _instant_like(v)}),
    contract.TASK_START: ({"partner_id": 1, "task_id": "telegram_bot", "occurred_at": at()},
                          {"partner_id": _positive_id, "task_id": _task_id, "occurred_at": _instant_like}),
    contract.TASK_CLAIM: ({"partner_id": 1, "task_id": "telegram_bot", "occurred_at": at()},
                          {"partner_id": _positive_id, "task_id": _task_id, "occurred_at": _instant_like}),
    contract.REFERRAL_RECORD: ({"referrer_id": 1, "referee_id": 2, "occurred_at": at()},
                               {"referrer_id": _positive_id, "referee_id": _positive_id,
                                "occurred_at": _instant_like}),
    contract.ADJUST: ({"partner_id": 1, "amount": 5, "reason": "goodwill", "request_id": "r-1"},
                      {"partner_id": _positive_id, "amount": _amount, "reason": _text(200),
                       "request_id": _text(100)}),
    contract.CHECKIN_BATCH: ({"checkins": [{"partner_id": 1, "occurred_at": at()}]},
                             {"checkins": lambda v: isinstance(v, list) and 0 < len(v) <= 500}),
    # Maintenance arguments are optional: none is removed, each can be broken.
    contract.MAINTENANCE_EXPIRE_STREAKS: ({"now": at()}, {"now": lambda v: v is None or _instant_like(v)}),
    contract.MAINTENANCE_RECONCILE: ({"now": at(), "full": True},
                                     {"now": lambda v: v is None or _instant_like(v),
                                      "full": lambda v: isinstance(v, bool)}),
}
OPTIONAL_ONLY = {contract.MAINTENANCE_EXPIRE_STREAKS, contract.MAINTENANCE_RECONCILE}


def _valid_checkin(item: Any) -> bool:
    return (isinstance(item, dict) and set(item) == {"partner_id", "occurred_at"}
            and _positive_id(item["partner_id"]) and _instant_like(item["occurred_at"]))


# A batch whose envelope is fine but whose every check-in is junk: each item
# is rejected and recorded on its own, and the batch is rejected as a whole.
junk_checkins = st.lists(json_values.filter(lambda item: not _valid_checkin(item)), min_size=1, max_size=4)


@st.composite
def broken_job(draw, job: str) -> tuple[list, dict[str, Any]]:
    """(args, kwargs): the job's good payload with one to three breakages, at least one that counts."""
    good, fields = JOBS[job]
    kwargs, args = dict(good), []
    for _ in range(draw(st.integers(1, 3))):
        breakages = ("bad_value", "extra_key", "positional") + (() if job in OPTIONAL_ONLY else ("missing",)) \
            + (("junk_items",) if job == contract.CHECKIN_BATCH else ())
        breakage = draw(st.sampled_from(breakages))
        if breakage == "bad_value":
            field = draw(st.sampled_from(sorted(fields)))
            kwargs[field] = draw(json_values.filter(lambda value, valid=fields[field]: not valid(value)))
        elif breakage == "missing" and kwargs:
            kwargs.pop(draw(st.sampled_from(sorted(kwargs))))
        elif breakage == "extra_key":
            key = draw(st.text(st.characters(codec=None), min_size=1, max_size=40).filter(lambda k: k not in fields))
            kwargs[key] = draw(json_values)
        elif breakage == "junk_items":
            kwargs["checkins"] = draw(junk_checkins)
        else:
            args = draw(st.lists(json_values, min_size=1, max_size=3))
    if kwargs == good and not args:  # every breakage was a no-op: break a value for sure
        field = draw(st.sampled_from(sorted(fields)))
        kwargs[field] = draw(json_values.filter(lambda value, valid=fields[field]: not valid(value)))
    return args, kwargs


def records(conn) -> int:
    """Deliveries recorded so far: job_failure attempts plus rejection audit events."""
    failures = conn.execute(text("SELECT COALESCE(SUM(attempts), 0) FROM job_failure")).scalar()
    return failures + count(conn, "audit_event WHERE event_type = 'job.rejected'")


@pytest.mark.parametrize("job", sorted(JOBS))
def test_a_broken_payload_is_rejected_recorded_and_writes_nothing(client, conn, job):
    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                     HealthCheck.filter_too_much])
    @given(broken=broken_job(job))
    def rejected_and_recorded(broken: tuple[list, dict[str, Any]]) -> None:
        args, kwargs = broken
        recorded_before = records(conn)
        sent = client.app.send_task(job, args=args, kwargs=kwargs, queue=contract.queue_for(job))
        result = sent.get(timeout=RESULT_TIMEOUT_S)

        assert result["status"] == "rejected" and result["reason"] in REASONS, result
        assert result["message"]
        assert sent.retries == 0
        if job == contract.CHECKIN_BATCH and result["reason"] == "all_rejected":
            # One job_failure row per check-in, and the batch's own rejection.
            assert records(conn) == recorded_before + len(kwargs["checkins"]) + 1
        else:
            assert records(conn) == recorded_before + 1
        for table in LEDGER_TABLES:
            assert count(conn, table) == 0, table

    rejected_and_recorded()
    # The worker is still consuming: a well-formed job of the same kind is answered on its merits.
    good, _ = JOBS[job]
    answered = client.send(job, **good).get(timeout=RESULT_TIMEOUT_S)
    assert answered.get("reason") != "invalid_payload"
    assert answered.get("status") in ("applied", "rejected") or "examined" in answered
