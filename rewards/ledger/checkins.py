"""Applying a daily check-in: one per partner per local day, exactly once, in any order.

The (partner, day) row is the idempotency key and is inserted in the same
transaction as the balance increment, the ledger rows and the audit row, so
a job delivered twice, or a worker killed half-way, never pays twice. The
same transaction records a PRO freeze the check-in used, the badge it earned
and the outbox events that tell upstream about them.

A check-in for a day after the partner's latest is the common, cheap case.
One for an earlier day (a retry, a redelivery, an offline client syncing
late) is applied too when it is inside the late window: the day is inserted
and the days after it re-priced (rewards.ledger.repricing), so the partner
ends where in-order processing would have left them. Older than the window,
it is rejected `too_late`.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Row, bindparam, func, select

from rewards import db, rules
from rewards.contract import keys
from rewards.contract.payloads import CheckinJob
from rewards.contract.results import (
    IN_FUTURE,
    TOO_LATE,
    CheckinResult,
    Outcome,
    as_json,
)
from rewards.db import insert_ignoring_conflicts
from rewards.ledger import badges, balance, outbox, plans, repricing, streaks
from rewards.models import checkin, xp_ledger
from rewards.rules import CheckinReward, Policy, PricedCheckin

_insert_checkin = insert_ignoring_conflicts(checkin, "partner_id", "day").returning(checkin.c.day)
_select_checkin = select(checkin).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.day == bindparam("day")
)
_select_xp_after = select(func.max(xp_ledger.c.balance_after)).where(
    xp_ledger.c.idempotency_key.in_(bindparam("keys", expanding=True))
)


def apply_checkin(conn: Connection, job: CheckinJob, policy: Policy, *, now: datetime,
                  future_tolerance: timedelta) -> Outcome:
    if job.occurred_at > now + future_tolerance:
        return Outcome.rejected(
            IN_FUTURE,
            f"occurred_at {job.occurred_at.isoformat()} is ahead of the worker's clock "
            f"({now.isoformat()}) by more than {future_tolerance}; check the producer's clock",
        )
    state = balance.lock_partner(conn, job.partner_id, now)
    day = rules.local_day(job.occurred_at, state.timezone)
    last_day = state.last_checkin_day
    if is_next(state, job, day):
        return _apply_next(conn, state, job, day, policy, now)
    if conn.execute(_select_checkin, {"partner_id": job.partner_id, "day": day}).first():
        return _duplicate_of(conn, job.partner_id, day)
    if day > last_day or job.occurred_at >= state.last_checkin_at:
        # The partner's time zone changed since the last check-in, and this
        # instant falls on a day that is not after it in the new zone (or on
        # a later day at an earlier instant). Paid days never move with a
        # time zone, and one instant never pays twice: the last check-in's.
        return _duplicate_of(conn, job.partner_id, last_day, reason="already_checked_in")
    if day < repricing.window_start(last_day, policy):
        return Outcome.rejected(
            TOO_LATE,
            f"a check-in for {day} is more than {policy.late_window_days} days before partner "
            f"{job.partner_id}'s latest check-in ({last_day}); re-drive it deliberately if it must count",
            key=keys.checkin_key(job.partner_id, day), day=day.isoformat(), latest_day=last_day.isoformat(),
        )
    return _apply_late(conn, state, job, day, policy, now)


def _apply_next(conn: Connection, state: Row, job: CheckinJob, day: date, policy: Policy,
                now: datetime) -> Outcome:
    """A check-in for a day after the partner's latest: no later day to re-price."""
    priced = price_next(conn, state, job, day, policy)
    if db.writes_in_one_statement(conn):
        credit = checkin_credit(state, job, priced, policy)
        xp_after = balance.credit_checkins(conn, [credit], rule_version=policy.version, now=now).get(
            (job.partner_id, day))
    else:
        xp_after = _write_next(conn, state, job, priced, policy, now)
    if xp_after is None:  # the key decides, whatever the partner row said
        return _duplicate_of(conn, job.partner_id, day)
    after_credit(conn, job.partner_id, priced, policy, now)
    return applied(job.partner_id, priced, xp_after)


def is_next(state: Row, job: CheckinJob, day: date) -> bool:
    """Whether `day` is after the partner's latest check-in, and at a later instant: the in-order case."""
    last_day = state.last_checkin_day
    return last_day is None or (day > last_day and job.occurred_at > state.last_checkin_at)


def applied(partner_id: int, priced: PricedCheckin, xp_after: int) -> Outcome:
    return Outcome.applied(keys.checkin_key(partner_id, priced.day), _details(partner_id, priced, xp_after))


def price_next(conn: Connection, state: Row, job: CheckinJob, day: date, policy: Policy) -> PricedCheckin:
    """The streak and price of the day after the locked partner `state`'s latest."""
    pro = plans.pro_at(conn, state, job.occurred_at)
    step = streaks.next_streak(conn, state, day, pro)
    return PricedCheckin(day, step.streak_days, step.frozen_days,
                         rules.checkin_reward(step.streak_days, pro, policy))


def checkin_credit(state: Row, job: CheckinJob, priced: PricedCheckin, policy: Policy) -> balance.CheckinCredit:
    """Everything the one-statement write of an in-order check-in binds."""
    reward = priced.reward
    return balance.CheckinCredit(
        partner_id=job.partner_id, day=priced.day, streak_days=priced.streak_days,
        longest_streak_days=max(state.longest_streak, priced.streak_days), frozen_days=priced.frozen_days,
        base_xp=reward.base_xp, bonus_xp=reward.bonus_xp, multiplier=reward.multiplier,
        xp_granted=reward.xp_granted, occurred_at=job.occurred_at,
        entries=repricing.checkin_entries(job.partner_id, priced, policy),
        # The statement adds xp_before and xp_after from the balance it moved.
        audit_payload={"day": priced.day.isoformat(), "xp_granted": reward.xp_granted},
    )


def _write_next(conn: Connection, state: Row, job: CheckinJob, priced: PricedCheckin, policy: Policy,
                now: datetime) -> int | None:
    """The statement-per-write path (SQLite): key row, credit, audit; None if the key was there."""
    reward = priced.reward
    inserted = conn.execute(_insert_checkin, {
        "partner_id": job.partner_id, "day": priced.day, "streak": priced.streak_days,
        "base_xp": reward.base_xp, "bonus_xp": reward.bonus_xp, "multiplier": reward.multiplier,
        "xp_granted": reward.xp_granted, "occurred_at": job.occurred_at,
        "frozen_days": priced.frozen_days, "created_at": now,
    }).first()
    if inserted is None:
        return None
    xp_after = balance.credit(
        conn, job.partner_id, repricing.checkin_entries(job.partner_id, priced, policy),
        occurred_at=job.occurred_at, rule_version=policy.version, now=now,
        also_set={"checkin_streak": priced.streak_days,
                  "longest_streak": max(state.longest_streak, priced.streak_days),
                  "last_checkin_day": priced.day, "last_checkin_at": job.occurred_at},
        also_add={"total_checkins": 1},
    )
    _audit(conn, job, _details(job.partner_id, priced, xp_after), now)
    return xp_after


def _apply_late(conn: Connection, state: Row, job: CheckinJob, day: date, policy: Policy,
                now: datetime) -> Outcome:
    """A check-in for a day before the partner's latest: insert it, re-price the days after it."""
    late = repricing.LateCheckin(day, job.occurred_at)
    found = repricing.reprice_checkins(conn, state, day, policy=policy, now=now, late=late,
                                       cause=f"a late check-in for {day}")
    xp_after = repricing.post(conn, state, found, policy=policy, now=now, rule_version=policy.version,
                              occurred_at=job.occurred_at, checkins_added=1)
    details = _details(job.partner_id, found.late_priced, xp_after, corrections=found.checkin_corrections)
    _audit(conn, job, details, now)
    return Outcome.applied(keys.checkin_key(job.partner_id, day), details)


def _audit(conn: Connection, job: CheckinJob, details: CheckinResult, now: datetime) -> None:
    """The balance before and after, and what moved it: the price itself is the check-in row's."""
    posted = sum(c.xp_posted for c in details.corrections or ())
    payload = {"day": details.day.isoformat(), "xp_before": details.xp_after - details.xp_granted - posted,
               "xp_after": details.xp_after, "xp_granted": details.xp_granted}
    if details.corrections:
        payload["corrections"] = as_json(details)["corrections"]
    balance.audit(conn, "checkin", job.partner_id, payload, now)


def after_credit(conn: Connection, partner_id: int, priced: PricedCheckin, policy: Policy,
                 now: datetime) -> None:
    """The freeze this check-in used, the badge it earned, and the events upstream hears of."""
    if priced.frozen_days:
        missed_day = priced.day - timedelta(days=1)
        streaks.record_freeze(conn, partner_id, missed_day, priced.day, now)
        outbox.emit_many(conn, [repricing.freeze_event(partner_id, priced)], now=now)
    if rules.is_milestone(priced.streak_days, policy):
        outbox.emit_many(conn, [repricing.milestone_event(partner_id, priced)], now=now)
    badge = rules.badge_reached(priced.streak_days)
    if badge is not None:
        badges.award(conn, partner_id, badge, priced.streak_days, priced.day, now)


def _duplicate_of(conn: Connection, partner_id: int, day: date,
                  reason: str = "already_applied") -> Outcome:
    """The day's check-in as it stands now (re-pricing may have moved it since it was paid)."""
    original = conn.execute(_select_checkin, {"partner_id": partner_id, "day": day}).one()
    key = keys.checkin_key(partner_id, day)
    paid_by = [key, keys.streak_bonus_key(partner_id, day)] + [
        keys.checkin_correction_key(partner_id, day, revision) for revision in range(1, original.revision + 1)]
    xp_after = conn.execute(_select_xp_after, {"keys": paid_by}).scalar_one()
    priced = PricedCheckin(day, original.streak, original.frozen_days,
                           CheckinReward(original.base_xp, original.bonus_xp, original.multiplier))
    return Outcome.duplicate(key, _details(partner_id, priced, xp_after), reason)


def _details(partner_id: int, priced: PricedCheckin, xp_after: int, corrections=None) -> CheckinResult:
    reward = priced.reward
    return CheckinResult(partner_id=partner_id, day=priced.day, streak=priced.streak_days,
                         frozen_days=priced.frozen_days, base_xp=reward.base_xp, bonus_xp=reward.bonus_xp,
                         multiplier=reward.multiplier, xp_granted=reward.xp_granted, xp_after=xp_after,
                         corrections=corrections or None)
