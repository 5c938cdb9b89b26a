"""Payload validation: every malformed job is named precisely, before anything is written."""

import pytest
from pydantic import ValidationError

from rewards.contract.payloads import (
    AdjustmentJob,
    CheckinJob,
    PartnerUpdateJob,
    ReferralJob,
    TaskClaimJob,
    describe_errors,
)

AT = "2026-11-24T09:30:00+00:00"


def problems(model, payload) -> dict[str, str]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(payload)
    return {item["field"]: item["problem"] for item in describe_errors(raised.value)}


def test_a_well_formed_checkin_parses_to_an_aware_instant():
    job = CheckinJob.model_validate({"partner_id": 42, "occurred_at": "2026-11-24T09:30:00Z"})
    assert job.partner_id == 42 and job.occurred_at.utcoffset().total_seconds() == 0


@pytest.mark.parametrize(
    ("payload", "field", "fragment"),
    [
        ({"occurred_at": AT}, "partner_id", "Field required"),
        ({"partner_id": 1}, "occurred_at", "Field required"),
        ({"partner_id": 1, "occurred_at": AT, "xp": 1000}, "xp", "not a field of this job"),
        ({"partner_id": "1", "occurred_at": AT}, "partner_id", "valid integer"),
        ({"partner_id": 1.0, "occurred_at": AT}, "partner_id", "valid integer"),
        ({"partner_id": True, "occurred_at": AT}, "partner_id", "valid integer"),
        ({"partner_id": 0, "occurred_at": AT}, "partner_id", "greater than 0"),
        ({"partner_id": -5, "occurred_at": AT}, "partner_id", "greater than 0"),
        ({"partner_id": 2**63, "occurred_at": AT}, "partner_id", "less than or equal"),
        ({"partner_id": 1, "occurred_at": "2026-11-24T09:30:00"}, "occurred_at", "no UTC offset"),
        ({"partner_id": 1, "occurred_at": "yesterday"}, "occurred_at", "not an ISO-8601"),
        ({"partner_id": 1, "occurred_at": 1764000000}, "occurred_at", "ISO-8601 string"),
        ({"partner_id": 1, "occurred_at": "2" * 100}, "occurred_at", "longer than"),
    ],
)
def test_a_malformed_checkin_names_the_field_and_the_problem(payload, field, fragment):
    assert fragment in problems(CheckinJob, payload)[field]


def test_a_partner_update_with_an_unknown_time_zone_is_refused():
    found = problems(PartnerUpdateJob, {"partner_id": 1, "occurred_at": AT, "timezone": "Mars/Olympus"})
    assert "not a known IANA time zone" in found["timezone"]


def test_a_partner_update_must_change_something():
    found = problems(PartnerUpdateJob, {"partner_id": 1, "occurred_at": AT})
    assert "nothing to update" in found["(payload)"]


def test_a_partner_update_cannot_clear_the_time_zone():
    found = problems(PartnerUpdateJob, {"partner_id": 1, "occurred_at": AT, "timezone": None})
    assert "cannot be cleared" in found["(payload)"]


def test_a_partner_update_may_end_pro_with_null():
    job = PartnerUpdateJob.model_validate({"partner_id": 1, "occurred_at": AT, "pro_until": None})
    assert job.sets_pro_until and job.pro_until is None and not job.sets_timezone


def task_payload(**changes):
    return {"partner_id": 1, "task_id": "invite_3_friends", "occurred_at": AT, **changes}


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"task_id": "Invite_3"}, "task_id", "pattern"),
        ({"task_id": ""}, "task_id", "at least 1"),
        ({"task_id": "a" * 65}, "task_id", "at most 64"),
        ({"task_id": 3}, "task_id", "valid string"),
        ({"partner_id": "1"}, "partner_id", "valid integer"),
    ],
)
def test_a_malformed_task_job_names_the_field(changes, field, fragment):
    assert fragment in problems(TaskClaimJob, task_payload(**changes))[field]


def test_a_referral_names_both_partners():
    job = ReferralJob.model_validate({"referrer_id": 1, "referee_id": 2, "occurred_at": AT})
    assert (job.referrer_id, job.referee_id) == (1, 2)


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"amount": 0}, "amount", "must not be 0"),
        ({"amount": True}, "amount", "valid integer"),
        ({"amount": 2_000_000_000}, "amount", "less than or equal"),
        ({"reason": ""}, "reason", "at least 1"),
        ({"reason": "x" * 201}, "reason", "at most 200"),
        ({"reason": "  "}, "reason", "blank"),
        ({"request_id": "r" * 101}, "request_id", "at most 100"),
    ],
)
def test_a_malformed_adjustment_names_the_field(changes, field, fragment):
    payload = {"partner_id": 1, "amount": -50, "reason": "chargeback", "request_id": "r-1", **changes}
    assert fragment in problems(AdjustmentJob, payload)[field]


@pytest.mark.parametrize("instant", ["2000-01-01T00:00:00+00:00", "2026-11-24T09:30+01:00",
                                     "2026-11-24T09:30:00.123456Z", "2200-01-01T00:00:00Z"])
def test_instants_inside_the_accepted_range_and_profile_parse(instant):
    assert CheckinJob.model_validate({"partner_id": 1, "occurred_at": instant}).occurred_at.tzinfo is not None


@pytest.mark.parametrize(("instant", "fragment"), [
    ("1999-12-31T23:59:59+00:00", "outside 2000-01-01"),
    ("2000-01-01T00:30:00+01:00", "outside 2000-01-01"),     # 1999-12-31T23:30Z
    ("2200-01-01T00:00:01+00:00", "outside"),
    ("9999-12-31T23:59:59-14:00", "not a valid date and time"),
    ("2026-02-30T09:30:00+00:00", "not a valid date and time"),
    ("2026-11-24 09:30:00+00:00", "not an ISO-8601 timestamp"),
    ("2026-11-24T09:30:00\x00+00:00", "not an ISO-8601 timestamp"),
    ("２０２６-11-24T09:30:00+00:00", "not an ISO-8601 timestamp"),
])
def test_instants_outside_the_range_or_the_profile_are_refused(instant, fragment):
    assert fragment in problems(CheckinJob, {"partner_id": 1, "occurred_at": instant})["occurred_at"]


@pytest.mark.parametrize("field", ["reason", "request_id"])
@pytest.mark.parametrize(("bad", "fragment"), [("a\x00b", "U+0000"), ("tab\there", "U+0009"),
                                               ("lone \ud800", "valid string")])
def test_adjustment_text_refuses_control_characters_and_lone_surrogates(field, bad, fragment):
    payload = {"partner_id": 1, "amount": 5, "reason": "ok", "request_id": "r-1", field: bad}
    assert fragment in problems(AdjustmentJob, payload)[field]


def test_an_unprintable_extra_key_is_named_quoted_and_cut():
    found = problems(CheckinJob, {"partner_id": 1, "occurred_at": AT, "k\x00" + "y" * 100: 1})
    (field,) = found
    assert field.startswith("'k\\x00yyy") and len(field) < 80
