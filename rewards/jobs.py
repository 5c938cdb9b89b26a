"""Job payloads: the JSON keyword arguments of each job, validated before any write.

Validation is strict on purpose: a producer in another language that sends
`"42"` for an id or a naive timestamp has a bug, and hearing about it as a
`rejected` result with the field named beats a silently coerced credit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

MAX_BIGINT = 2**63 - 1
# An operator's adjustment moves at most this much XP either way: a typo with
# extra zeros is refused rather than credited.
MAX_ADJUSTMENT_XP = 1_000_000_000


def _parse_instant(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 string with a UTC offset, e.g. 2026-11-24T09:30:00+00:00")
    if len(value) > 64:
        raise ValueError("is longer than any ISO-8601 timestamp")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no UTC offset; add one, e.g. {value}+00:00")
    return parsed


def parse_instant(value: Any) -> datetime:
    """An ISO-8601 instant with a UTC offset; ValueError naming the problem otherwise."""
    return _parse_instant(value)


def _check_timezone(value: Any) -> str:
    if not isinstance(value, str) or not value or len(value) > 64:
        raise ValueError("must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known IANA time zone name") from None
    return value


PartnerId = Annotated[int, Field(strict=True, gt=0, le=MAX_BIGINT)]
Instant = Annotated[datetime, BeforeValidator(_parse_instant)]
TimeZoneName = Annotated[str, BeforeValidator(_check_timezone)]
TaskId = Annotated[str, Field(strict=True, min_length=1, max_length=64, pattern=r"^[a-z0-9_]{1,64}$")]


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CheckinJob(Job):
    partner_id: PartnerId
    occurred_at: Instant


class PartnerUpdateJob(Job):
    partner_id: PartnerId
    occurred_at: Instant
    pro_until: Instant | None = None
    timezone: TimeZoneName | None = None

    @model_validator(mode="after")
    def _changes_something(self) -> PartnerUpdateJob:
        if not {"pro_until", "timezone"} & self.model_fields_set:
            raise ValueError("give pro_until and/or timezone: there is nothing to update")
        if "timezone" in self.model_fields_set and self.timezone is None:
            raise ValueError("timezone cannot be cleared; send 'UTC' to reset it")
        return self

    @property
    def sets_pro_until(self) -> bool:
        return "pro_until" in self.model_fields_set

    @property
    def sets_timezone(self) -> bool:
        return "timezone" in self.model_fields_set


class TaskJob(Job):
    partner_id: PartnerId
    task_id: TaskId
    occurred_at: Instant


class TaskStartJob(TaskJob):
    pass


class TaskClaimJob(TaskJob):
    pass


class ReferralJob(Job):
    referrer_id: PartnerId
    referee_id: PartnerId
    occurred_at: Instant


class AdjustmentJob(Job):
    partner_id: PartnerId
    amount: Annotated[int, Field(strict=True, ge=-MAX_ADJUSTMENT_XP, le=MAX_ADJUSTMENT_XP)]
    reason: Annotated[str, Field(strict=True, min_length=1, max_length=200)]
    request_id: Annotated[str, Field(strict=True, min_length=1, max_length=100)]

    @field_validator("amount")
    @classmethod
    def _moves_something(cls, amount: int) -> int:
        if amount == 0:
            raise ValueError("must not be 0: an adjustment grants (> 0) or deducts (< 0) XP")
        return amount

    @field_validator("reason", "request_id")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be blank")
        return value


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as [{field, problem}], readable by a person and a program."""
    described = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "(payload)"
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problem = "is not a field of this job"
        described.append({"field": field, "problem": problem})
    return described
