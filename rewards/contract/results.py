"""What applying a job came to: applied, duplicate or rejected, as JSON.

Expected cases (a second check-in the same day, a claim too early, bad input)
are outcomes with a stable machine-readable reason, never exceptions: an
exception means a bug or a transient fault, and only those are retried.

Each job's details are one frozen dataclass below (`CheckinResult`,
`TaskClaimResult`, …): the result's shape is declared, as its payload is in
`rewards.contract.payloads`. A `duplicate` carries the original's details.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import date, datetime, timedelta
from typing import Any, Mapping

APPLIED = "applied"
DUPLICATE = "duplicate"
REJECTED = "rejected"

# Rejection reasons: a stable vocabulary upstream apps can branch on.
INVALID_PAYLOAD = "invalid_payload"
IN_FUTURE = "in_future"
TOO_LATE = "too_late"
SUPERSEDED = "superseded"
UNKNOWN_TASK = "unknown_task"
NOT_STARTED = "not_started"
ALREADY_COMPLETED = "already_completed"
REQUIREMENT_NOT_MET = "requirement_not_met"
SELF_REFERRAL = "self_referral"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
INSUFFICIENT_XP = "insufficient_xp"
TOO_MANY_CHECKINS = "too_many_checkins"
ALL_REJECTED = "all_rejected"
APPLY_FAILED = "apply_failed"
# The job arrived through a queue that is not its own (an upstream app
# sending an operator's or a maintenance job): it was not run.
NOT_PERMITTED = "not_permitted"


def _jsonable(value: Any) -> Any:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if isinstance(value, dict):
        return {name: _jsonable(item) for name, item in value.items()}
    if isinstance(value, Outcome):
        return value.as_result()
    if hasattr(value, "__dataclass_fields__"):
        return as_json(value)
    return value


def as_json(details: Any) -> dict[str, Any]:
    """A result dataclass as JSON, in field order; fields without a value are left out."""
    return {f.name: _jsonable(getattr(details, f.name)) for f in fields(details)
            if getattr(details, f.name) is not None}


@dataclass(frozen=True)
class CheckinCorrection:
    """A day re-priced by a late job: what it paid, what it pays now, what the ledger moved."""

    key: str
    day: date
    streak_was: int
    streak: int
    xp_was: int
    xp_granted: int
    # xp_granted - xp_was, unless the balance could not cover a deduction.
    xp_posted: int


@dataclass(frozen=True)
class TaskCorrection:
    """A completed attempt re-priced by a late PRO change."""

    key: str
    task_id: str
    attempt: int
    multiplier_was: int
    multiplier: int
    xp_was: int
    xp_granted: int
    xp_posted: int


@dataclass(frozen=True)
class CheckinResult:
    partner_id: int
    day: date
    streak: int
    frozen_days: int
    base_xp: int
    bonus_xp: int
    multiplier: int
    xp_granted: int
    xp_after: int
    # Later days this late check-in re-priced, if any.
    corrections: list[CheckinCorrection] | None = None


@dataclass(frozen=True)
class TaskStartResult:
    partner_id: int
    task_id: str
    attempt: int
    task_status: str
    initial_metric_value: int
    start_day: date
    started_at: datetime


@dataclass(frozen=True)
class TaskClaimResult:
    partner_id: int
    task_id: str
    attempt: int
    base_xp: int
    multiplier: int
    xp_granted: int
    xp_before: int
    xp_after: int
    completed_at: datetime


@dataclass(frozen=True)
class ReferralResult:
    referrer_id: int
    referee_id: int
    occurred_at: datetime
    # The referrer's count after this referral; a duplicate leaves it out.
    referral_count: int | None = None


@dataclass(frozen=True)
class AdjustmentResult:
    partner_id: int
    request_id: str
    xp_granted: int
    xp_before: int
    xp_after: int


@dataclass(frozen=True)
class PartnerUpdateResult:
    partner_id: int
    # Field name -> the value now in force.
    changed: dict[str, Any]
    # Fields a newer update had already set; a duplicate leaves it out.
    superseded: list[str] | None = None
    # Check-ins and claims a late PRO change re-priced, if any.
    corrections: list[CheckinCorrection | TaskCorrection] | None = None


@dataclass(frozen=True)
class BatchResult:
    """A batch's tally, then each item's own result, in the order they were sent.

    `items[i]` is the outcome of the batch's `checkins[i]` (or `items[i]`):
    applied, duplicate (with the original's details) or rejected with its
    reason, exactly as that job would have got sent alone.
    """

    applied: int
    duplicate: int
    rejected: int
    xp_granted: int
    items: tuple[Outcome, ...]

    @classmethod
    def of(cls, items: list[Outcome]) -> BatchResult:
        statuses = [item.status for item in items]
        return cls(applied=statuses.count(APPLIED), duplicate=statuses.count(DUPLICATE),
                   rejected=statuses.count(REJECTED),
                   xp_granted=sum(item.xp_granted or 0 for item in items if item.status == APPLIED),
                   items=tuple(items))

    def outcome(self) -> Outcome:
        """The batch's own status: applied if any item was, duplicate if only repeats, else rejected."""
        if self.applied:
            return Outcome(APPLIED, details=self)
        if self.duplicate:
            return Outcome(DUPLICATE, reason="already_applied", details=self)
        return Outcome(REJECTED, reason=ALL_REJECTED, message="every item of the batch was rejected; "
                       "each item says why", details=self)


Details = CheckinResult | BatchResult | TaskStartResult | TaskClaimResult | ReferralResult | AdjustmentResult | \
    PartnerUpdateResult


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    message: str | None = None
    key: str | None = None
    # What was applied (or, for a duplicate, what had been); a rejection's
    # context (the field that failed, the progress so far) is a plain mapping.
    details: Details | Mapping[str, Any] | None = None

    @classmethod
    def applied(cls, key: str, details: Details) -> Outcome:
        return cls(APPLIED, key=key, details=details)

    @classmethod
    def duplicate(cls, key: str, details: Details, reason: str = "already_applied") -> Outcome:
        return cls(DUPLICATE, reason=reason, key=key, details=details)

    @classmethod
    def rejected(cls, reason: str, message: str, key: str | None = None, **context: Any) -> Outcome:
        return cls(REJECTED, reason=reason, message=message, key=key, details=context)

    @property
    def xp_granted(self) -> int | None:
        return getattr(self.details, "xp_granted", None)

    def as_result(self) -> dict[str, Any]:
        """The job's JSON result: status, reason, message, key, then the details."""
        result: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.message is not None:
            result["message"] = self.message
        if self.key is not None:
            result["key"] = self.key
        if isinstance(self.details, Mapping):
            result.update(_jsonable(dict(self.details)))
        elif self.details is not None:
            result.update(as_json(self.details))
        return result


def in_future(occurred_at: datetime, now: datetime, future_tolerance: timedelta, **details: Any) -> Outcome | None:
    """The `in_future` rejection when `occurred_at` is ahead of the worker's clock by more than the tolerance."""
    if occurred_at <= now + future_tolerance:
        return None
    return Outcome.rejected(
        IN_FUTURE,
        f"occurred_at {occurred_at.isoformat()} is ahead of the worker's clock "
        f"({now.isoformat()}) by more than {future_tolerance}; check the producer's clock",
        **details,
    )
