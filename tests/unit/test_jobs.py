"""Payload validation: every malformed job is named precisely, before anything is written."""

import pytest
from pydantic import ValidationError

from rewards.jobs import CheckinJob, PartnerUpdateJob, describe_errors

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
