"""What applying a job came to: applied, duplicate or rejected, as JSON.

Expected cases (a second check-in the same day, a claim too early, bad input)
are outcomes with a stable machine-readable reason, never exceptions: an
exception means a bug or a transient fault, and only those are retried.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

APPLIED = "applied"
DUPLICATE = "duplicate"
REJECTED = "rejected"

# Rejection reasons: a stable vocabulary upstream apps can branch on.
INVALID_PAYLOAD = "invalid_payload"
IN_FUTURE = "in_future"
OUT_OF_ORDER = "out_of_order"
SUPERSEDED = "superseded"
UNKNOWN_TASK = "unknown_task"
NOT_STARTED = "not_started"
ALREADY_COMPLETED = "already_completed"
REQUIREMENT_NOT_MET = "requirement_not_met"
SELF_REFERRAL = "self_referral"
IDEMPOTENCY_CONFLICT = "idempotency_conflict"
INSUFFICIENT_XP = "insufficient_xp"


@dataclass(frozen=True)
class Outcome:
    status: str
    reason: str | None = None
    message: str | None = None
    key: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def applied(cls, key: str, **details: Any) -> Outcome:
        return cls(APPLIED, key=key, details=details)

    @classmethod
    def duplicate(cls, key: str, reason: str = "already_applied", **details: Any) -> Outcome:
        return cls(DUPLICATE, reason=reason, key=key, details=details)

    @classmethod
    def rejected(cls, reason: str, message: str, key: str | None = None, **details: Any) -> Outcome:
        return cls(REJECTED, reason=reason, message=message, key=key, details=details)

    def as_result(self) -> dict[str, Any]:
        """The job's JSON result: status, reason, message, key, then the details."""
        result: dict[str, Any] = {"status": self.status, "reason": self.reason}
        if self.message is not None:
            result["message"] = self.message
        if self.key is not None:
            result["key"] = self.key
        result.update(self.details)
        return result
