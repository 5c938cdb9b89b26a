"""Job payloads: the JSON keyword arguments of each job, validated before any write.

Validation is strict on purpose: a producer in another language that sends
`"42"` for an id or a naive timestamp has a bug, and hearing about it as a
`rejected` result with the field named beats a silently coerced credit.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timezone
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from rewards.contract.results import INVALID_PAYLOAD, Outcome

MAX_BIGINT = 2**63 - 1
# No deployment may let one batch message carry more items than this
# (REWARDS_BATCH_MAX, default 500, is the limit actually enforced): one job's
# transaction must stay well inside the task time limit.
MAX_BATCH_ITEMS = 10_000
# An operator's adjustment moves at most this much XP either way: a typo with
# extra zeros is refused rather than credited.
MAX_ADJUSTMENT_XP = 1_000_000_000
MAX_REASON_CHARS = 200
MAX_REQUEST_ID_CHARS = 100

# Instants a job may carry. Nothing this engine rewards happened before 2000
# (inclusive bound: it is also "long ago" for a setup job), and nothing after
# 2200 is a real plan end; the bounds also keep every later date arithmetic
# (local days, offsets) far from datetime's limits. How far ahead of the
# worker's clock `occurred_at` may be is the job's `in_future` rule.
EARLIEST_INSTANT = datetime(2000, 1, 1, tzinfo=timezone.utc)
LATEST_INSTANT = datetime(2200, 1, 1, tzinfo=timezone.utc)
# The ISO-8601 profile accepted: date, `T`, time to the minute or second with
# up to 6 fractional digits, and an offset (`Z` or ±HH:MM). Stricter than
# datetime.fromisoformat, which also takes week dates, spaces and more.
_INSTANT_PATTERN = re.compile(
    r"(?P<local>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(?::\d{2}(?:\.\d{1,6})?)?)(?P<offset>Z|[+-]\d{2}:\d{2})?",
    re.ASCII,
)
_EXAMPLE_INSTANT = "2026-11-24T09:30:00+00:00"
# IANA names are ASCII letters, digits and `/ _ - +` (e.g. America/Port-au-Prince, Etc/GMT+5).
_ZONE_NAME_PATTERN = re.compile(r"[A-Za-z0-9_+\-/]{1,64}", re.ASCII)


def _parse_instant(value: Any) -> datetime:
    """An instant in the accepted profile and range, or ValueError naming the problem."""
    if not isinstance(value, str):
        raise ValueError(f"must be an ISO-8601 string with a UTC offset, e.g. {_EXAMPLE_INSTANT}")
    if len(value) > 40:
        raise ValueError("is longer than any ISO-8601 timestamp")
    matched = _INSTANT_PATTERN.fullmatch(value)
    if matched is None:
        raise ValueError(f"{value!r} is not an ISO-8601 timestamp like {_EXAMPLE_INSTANT}")
    if matched["offset"] is None:
        raise ValueError(f"{value!r} has no UTC offset; add one, e.g. {value}+00:00")
    try:
        parsed = datetime.fromisoformat(value)
        instant_utc = parsed.astimezone(timezone.utc)
    except (ValueError, OverflowError):
        raise ValueError(f"{value!r} is not a valid date and time") from None
    if not EARLIEST_INSTANT <= instant_utc <= LATEST_INSTANT:
        raise ValueError(f"{value!r} is outside {EARLIEST_INSTANT.isoformat()} .. {LATEST_INSTANT.isoformat()}")
    return parsed


def _is_surrogate(char: str) -> bool:
    return "\ud800" <= char <= "\udfff"


def _check_text(value: str) -> str:
    """Text a person or PostgreSQL can hold: no control characters (NUL included), no lone surrogates."""
    for position, char in enumerate(value):
        if unicodedata.category(char) == "Cc" or _is_surrogate(char):
            raise ValueError(f"contains the character U+{ord(char):04X} at position {position}; "
                             "control characters and lone surrogates are not accepted")
    return value


def _check_timezone(value: Any) -> str:
    if not isinstance(value, str) or _ZONE_NAME_PATTERN.fullmatch(value) is None:
        raise ValueError("must be an IANA time zone name such as Europe/Berlin")
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError, OSError):
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


class CheckinBatchJob(Job):
    """Many check-ins in one message; each item is a CheckinJob's payload.

    Only the envelope is validated here: each item is validated on its own
    when the batch is applied, so one bad check-in is rejected alone.
    """

    checkins: Annotated[list[Any], Field(strict=True, min_length=1, max_length=MAX_BATCH_ITEMS)]


class ClaimsBatchJob(Job):
    """Many claims-queue jobs in one message; each item is `{"job": name, "kwargs": payload}`.

    As for check-ins, only the envelope is validated here (claims_batch_item
    validates each item), so one bad item is rejected alone.
    """

    items: Annotated[list[Any], Field(strict=True, min_length=1, max_length=MAX_BATCH_ITEMS)]


class ClaimsBatchItem(Job):
    job: str
    kwargs: Annotated[dict[str, Any], Field(strict=True)]


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
    reason: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_REASON_CHARS), AfterValidator(_check_text)]
    request_id: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_REQUEST_ID_CHARS),
                          AfterValidator(_check_text)]

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


class MaintenanceJob(Job):
    """The arguments of a maintenance job: `now`, to run as of a given instant (beat sends none)."""

    now: Instant | None = None


class ReconcileJob(MaintenanceJob):
    full: Annotated[bool, Field(strict=True)] = False


# A payload with thousands of bad keys is described by its first few.
MAX_ERRORS_LISTED = 20
_PLAIN_FIELD = re.compile(r"[A-Za-z0-9_.()]{1,64}", re.ASCII)


def _field_name(loc: tuple) -> str:
    name = ".".join(str(part) for part in loc) or "(payload)"
    # A key sent by the producer is echoed back: quoted and cut when it is
    # not a plain name, so a control character or a megabyte key cannot
    # reach a log line or a database column as is.
    return name if _PLAIN_FIELD.fullmatch(name) else ascii(name[:64])


def describe_errors(error: ValidationError) -> list[dict[str, str]]:
    """Pydantic's errors as [{field, problem}], readable by a person and a program."""
    items = error.errors(include_url=False, include_input=False)
    described = []
    for item in items[:MAX_ERRORS_LISTED]:
        problem = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            problem = "is not a field of this job"
        described.append({"field": _field_name(item["loc"]), "problem": problem})
    if len(items) > MAX_ERRORS_LISTED:
        described.append({"field": "(payload)", "problem": f"{len(items) - MAX_ERRORS_LISTED} more problems"})
    return described


def validate_job(model: type[Job], args: tuple, kwargs: dict[str, Any]) -> tuple[Job | None, Outcome | None]:
    """The job, or an `invalid_payload` rejection naming each bad field; never raises for bad input."""
    if args:
        return None, Outcome.rejected(
            INVALID_PAYLOAD, "positional arguments are not accepted; send keyword arguments",
            errors=[{"field": "(args)", "problem": f"{len(args)} positional argument(s) given"}],
        )
    try:
        return model.model_validate(kwargs), None
    except ValidationError as error:
        errors = describe_errors(error)
        message = "; ".join(f"{item['field']}: {item['problem']}" for item in errors)
        return None, Outcome.rejected(INVALID_PAYLOAD, message, errors=errors)
