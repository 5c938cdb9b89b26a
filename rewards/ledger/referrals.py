"""Recording a referral: once per referee, the first referrer wins.

The referee's row is the idempotency key. It is inserted (ON CONFLICT DO
NOTHING RETURNING) in the same transaction as `referral_count =
referral_count + 1`, so the count always equals the referrer's rows.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Connection, bindparam, select, update

from rewards.contract import keys
from rewards.contract.payloads import ReferralJob
from rewards.contract.results import (
    SELF_REFERRAL,
    Outcome,
    ReferralResult,
    as_json,
    in_future,
)
from rewards.db import insert_ignoring_conflicts
from rewards.ledger import balance
from rewards.models import partner, referral

_insert_referral = insert_ignoring_conflicts(referral, "referee_id").returning(referral.c.referee_id)
_select_referral = select(referral).where(referral.c.referee_id == bindparam("referee_id"))
_count_referral = (
    update(partner)
    .where(partner.c.id == bindparam("referrer_id"))
    .values(referral_count=partner.c.referral_count + 1, updated_at=bindparam("now"))
    .returning(partner.c.referral_count)
)


def apply_referral(conn: Connection, job: ReferralJob, *, now: datetime, future_tolerance: timedelta) -> Outcome:
    key = keys.referral_key(job.referee_id)
    refusal = in_future(job.occurred_at, now, future_tolerance, key=key, referrer_id=job.referrer_id,
                        referee_id=job.referee_id)
    if refusal is not None:
        return refusal
    if job.referrer_id == job.referee_id:
        return Outcome.rejected(SELF_REFERRAL, f"partner {job.referrer_id} cannot refer themselves",
                                key=key, referrer_id=job.referrer_id, referee_id=job.referee_id)
    # Always lock the lower id first: two referrals between the same pair of
    # partners, in opposite directions, then queue instead of deadlocking.
    for partner_id in sorted((job.referrer_id, job.referee_id)):
        balance.lock_partner(conn, partner_id, now)
    inserted = conn.execute(_insert_referral, {
        "referee_id": job.referee_id, "referrer_id": job.referrer_id,
        "occurred_at": job.occurred_at, "created_at": now,
    }).first()
    if inserted is None:  # the referee's key decides: the first referrer won
        original = conn.execute(_select_referral, {"referee_id": job.referee_id}).one()
        reason = "already_applied" if original.referrer_id == job.referrer_id else "already_referred"
        return Outcome.duplicate(key, ReferralResult(original.referrer_id, job.referee_id,
                                                     original.occurred_at), reason)
    referral_count = conn.execute(_count_referral, {"referrer_id": job.referrer_id, "now": now}).scalar_one()
    details = ReferralResult(job.referrer_id, job.referee_id, job.occurred_at, referral_count)
    balance.audit(conn, "referral", job.referrer_id, as_json(details), now)
    return Outcome.applied(key, details)
