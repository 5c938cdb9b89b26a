"""An operator's grant or deduction of XP, idempotent by request_id.

As with Stripe's idempotency keys, the first outcome of a request_id is
final: replaying it answers `duplicate` with that outcome (a refused
deduction stays refused even if the balance has grown since), and reusing it
with other parameters is refused as `idempotency_conflict`. The adjustment
row is the key, inserted in the same transaction as the credit.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, select

from rewards.contract import keys
from rewards.contract.payloads import AdjustmentJob
from rewards.contract.results import (
    IDEMPOTENCY_CONFLICT,
    INSUFFICIENT_XP,
    AdjustmentResult,
    Outcome,
    as_json,
)
from rewards.db import insert_ignoring_conflicts
from rewards.ledger import balance
from rewards.models import adjustment, xp_ledger

# Adjustments are not priced by the catalogue or the rules: the operator names the amount.
RULE_VERSION = "operator"

_insert_adjustment = insert_ignoring_conflicts(adjustment, "request_id").returning(adjustment.c.request_id)
_select_adjustment = select(adjustment).where(adjustment.c.request_id == bindparam("request_id"))
_select_xp_after = select(xp_ledger.c.balance_after).where(xp_ledger.c.idempotency_key == bindparam("key"))


@dataclass(frozen=True)
class Sender:
    """Who sent an adjustment, and whether the broker vouched for it (RabbitMQ's validated user_id)."""

    name: str | None
    verified: bool


UNKNOWN_SENDER = Sender(name=None, verified=False)


def apply_adjustment(conn: Connection, job: AdjustmentJob, *, now: datetime,
                     sender: Sender = UNKNOWN_SENDER) -> Outcome:
    original = conn.execute(_select_adjustment, {"request_id": job.request_id}).first()
    if original is not None:
        return _replay(conn, job, original)
    state = balance.lock_partner(conn, job.partner_id, now)
    refused = state.xp + job.amount < 0
    inserted = conn.execute(_insert_adjustment, {
        "request_id": job.request_id, "partner_id": job.partner_id, "amount": job.amount,
        "reason": job.reason, "status": "rejected" if refused else "applied",
        "rejection_reason": INSUFFICIENT_XP if refused else None, "created_at": now,
    }).first()
    if inserted is None:  # the same request_id, for another partner, committed meanwhile
        return _replay(conn, job, conn.execute(_select_adjustment, {"request_id": job.request_id}).one())
    key = keys.adjustment_key(job.request_id)
    if refused:
        return _insufficient(job, state.xp)
    verb = "Grant" if job.amount > 0 else "Deduction"
    entry = balance.Entry("adjustment", job.amount, 1, key, f"{verb} by an operator: {job.reason}")
    xp_after = balance.credit(conn, job.partner_id, [entry], occurred_at=now, rule_version=RULE_VERSION, now=now)
    details = _details(job, xp_after)
    balance.audit(conn, "adjustment", job.partner_id, {
        **as_json(details), "reason": job.reason, "sent_by": sender.name, "sent_by_verified": sender.verified,
    }, now)
    return Outcome.applied(key, details)


def _replay(conn: Connection, job: AdjustmentJob, original: Row) -> Outcome:
    key = keys.adjustment_key(job.request_id)
    asked = (job.partner_id, job.amount, job.reason)
    if asked != (original.partner_id, original.amount, original.reason):
        return Outcome.rejected(
            IDEMPOTENCY_CONFLICT,
            f"request_id {job.request_id!r} was already used with other parameters "
            f"(partner {original.partner_id}, amount {original.amount}); use a new request_id",
            key=key, request_id=job.request_id,
        )
    if original.status == "rejected":
        return Outcome.rejected(original.rejection_reason,
                                f"request_id {job.request_id!r} was refused before: {original.rejection_reason}",
                                key=key, request_id=job.request_id, partner_id=job.partner_id)
    xp_after = conn.execute(_select_xp_after, {"key": key}).scalar_one()
    return Outcome.duplicate(key, _details(job, xp_after))


def _insufficient(job: AdjustmentJob, xp: int) -> Outcome:
    return Outcome.rejected(
        INSUFFICIENT_XP,
        f"deducting {-job.amount} XP would take partner {job.partner_id} below zero (balance {xp})",
        key=keys.adjustment_key(job.request_id), request_id=job.request_id, partner_id=job.partner_id, xp=xp,
    )


def _details(job: AdjustmentJob, xp_after: int) -> AdjustmentResult:
    return AdjustmentResult(partner_id=job.partner_id, request_id=job.request_id, xp_granted=job.amount,
                            xp_before=xp_after - job.amount, xp_after=xp_after)
