"""Applying a daily check-in: one per partner per local day, exactly once.

The (partner, day) row is the idempotency key and is inserted in the same
transaction as the balance increment, the ledger rows and the audit row, so
a job delivered twice, or a worker killed half-way, never pays twice. The
same transaction records a PRO freeze the check-in used, the badge it earned
and the outbox events that tell upstream about them.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from rewards import badges, ledger, outbox, rules, streaks
from rewards.db import insert_ignoring_conflicts
from rewards.jobs import CheckinJob
from rewards.models import checkin, partner, xp_ledger
from rewards.outcome import IN_FUTURE, OUT_OF_ORDER, Outcome
from rewards.rules import CheckinReward, Policy, StreakStep

_insert_checkin = insert_ignoring_conflicts(checkin, "partner_id", "day").returning(checkin.c.day)
_select_checkin = select(checkin).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.day == bindparam("day")
)
_select_xp_after = select(func.max(xp_ledger.c.balance_after)).where(
    xp_ledger.c.idempotency_key.in_(bindparam("keys", expanding=True))
)
_credit_checkin = (
    update(partner)
    .where(partner.c.id == bindparam("partner_id"))
    .values(
        xp=partner.c.xp + bindparam("xp_granted"),
        checkin_streak=bindparam("streak"),
        longest_streak=bindparam("longest_streak"),
        last_checkin_day=bindparam("day"),
        last_checkin_at=bindparam("occurred_at"),
        total_checkins=partner.c.total_checkins + 1,
        updated_at=bindparam("now"),
    )
    .returning(partner.c.xp)
)


def checkin_key(partner_id: int, day: date) -> str:
    return f"checkin:{partner_id}:{day.isoformat()}"


def apply_checkin(conn: Connection, job: CheckinJob, policy: Policy, *, now: datetime,
                  future_tolerance: timedelta) -> Outcome:
    if job.occurred_at > now + future_tolerance:
        return Outcome.rejected(
            IN_FUTURE,
            f"occurred_at {job.occurred_at.isoformat()} is ahead of the worker's clock "
            f"({now.isoformat()}) by more than {future_tolerance}; check the producer's clock",
        )
    state = ledger.lock_partner(conn, job.partner_id, now)
    day = rules.local_day(job.occurred_at, state.timezone)
    if state.last_checkin_at is not None and (
        day <= state.last_checkin_day or job.occurred_at <= state.last_checkin_at
    ):
        return _not_new(conn, state, job, day)

    pro = rules.is_pro(state.pro_until, job.occurred_at)
    step = streaks.next_streak(conn, state, day, pro)
    streak = step.streak_days
    reward = rules.checkin_reward(streak, pro, policy)
    key = checkin_key(job.partner_id, day)
    inserted = conn.execute(_insert_checkin, {
        "partner_id": job.partner_id, "day": day, "streak": streak,
        "base_xp": reward.base_xp, "bonus_xp": reward.bonus_xp, "multiplier": reward.multiplier,
        "xp_granted": reward.xp_granted, "occurred_at": job.occurred_at,
        "frozen_days": step.frozen_days, "created_at": now,
    }).first()
    if inserted is None:  # the key decides, whatever the partner row said
        return _duplicate_of(conn, job.partner_id, day)

    xp_after = conn.execute(_credit_checkin, {
        "partner_id": job.partner_id, "xp_granted": reward.xp_granted, "streak": streak,
        "longest_streak": max(state.longest_streak, streak), "day": day,
        "occurred_at": job.occurred_at, "now": now,
    }).scalar_one()
    ledger.write_ledger_rows(conn, job.partner_id, _entries(key, day, streak, reward, policy),
                             xp_after=xp_after, occurred_at=job.occurred_at,
                             rule_version=policy.version, now=now)
    details = _details(job.partner_id, day, streak, reward, xp_after, step.frozen_days)
    ledger.audit(conn, "checkin", job.partner_id, {
        **details, "xp_before": xp_after - reward.xp_granted,
        "timestamp": job.occurred_at.isoformat(),
    }, now)
    _streak_events(conn, job.partner_id, day, step, details, policy, now)
    return Outcome.applied(key, **details)


def _streak_events(conn: Connection, partner_id: int, day: date, step: StreakStep,
                   details: dict[str, Any], policy: Policy, now: datetime) -> None:
    """The freeze this check-in used, the badge it earned, and the events upstream hears of."""
    if step.frozen_days:
        missed_day = day - timedelta(days=1)
        week = streaks.record_freeze(conn, partner_id, missed_day, day, now)
        outbox.emit(conn, outbox.STREAK_FREEZE_USED, partner_id, {
            "frozen_day": missed_day.isoformat(), "iso_week": week, "checkin_day": day.isoformat(),
            "streak": step.streak_days,
        }, key=f"streak_freeze:{partner_id}:{week}", now=now)
    if rules.is_milestone(step.streak_days, policy):
        outbox.emit(conn, outbox.CHECKIN_MILESTONE, partner_id, {
            "streak": step.streak_days, "day": day.isoformat(), "bonus_xp": details["bonus_xp"],
            "multiplier": details["multiplier"], "xp_granted": details["xp_granted"],
        }, key=f"checkin_milestone:{partner_id}:{day.isoformat()}", now=now)
    badge = rules.badge_reached(step.streak_days)
    if badge is not None:
        badges.award(conn, partner_id, badge, step.streak_days, day, now)


def _not_new(conn: Connection, state: Row, job: CheckinJob, day: date) -> Outcome:
    """A check-in that does not come after the partner's last one.

    The same day again is a duplicate of that day's check-in. An instant
    before the last check-in arrived late and is refused. What remains is a
    later instant on an already-paid local day (the partner moved west), or
    the very instant of the last check-in seen through a new time zone: either
    way one instant or one day never pays twice, so it is the last check-in's
    duplicate.
    """
    if conn.execute(_select_checkin, {"partner_id": job.partner_id, "day": day}).first():
        return _duplicate_of(conn, job.partner_id, day)
    if job.occurred_at < state.last_checkin_at:
        return Outcome.rejected(
            OUT_OF_ORDER,
            f"a check-in at {job.occurred_at.isoformat()} arrived after a later one "
            f"({state.last_checkin_at.isoformat()}, day {state.last_checkin_day}) was applied",
            key=checkin_key(job.partner_id, day), day=day.isoformat(),
        )
    return _duplicate_of(conn, job.partner_id, state.last_checkin_day, reason="already_checked_in")


def _duplicate_of(conn: Connection, partner_id: int, day: date,
                  reason: str = "already_applied") -> Outcome:
    original = conn.execute(_select_checkin, {"partner_id": partner_id, "day": day}).one()
    key = checkin_key(partner_id, day)
    xp_after = conn.execute(_select_xp_after, {"keys": [key, key + ":bonus"]}).scalar_one()
    reward = CheckinReward(original.base_xp, original.bonus_xp, original.multiplier)
    return Outcome.duplicate(key, reason, **_details(partner_id, day, original.streak, reward, xp_after,
                                                     original.frozen_days))


def _entries(key: str, day: date, streak: int, reward: CheckinReward, policy: Policy) -> list[ledger.Entry]:
    pro_note = f" (PRO ×{reward.multiplier})" if reward.multiplier > 1 else ""
    entries = [ledger.Entry("checkin", reward.base_xp, reward.multiplier, key,
                            f"Daily check-in for {day}, day {streak} of your streak{pro_note}")]
    if reward.bonus_xp:
        entries.append(ledger.Entry(
            "streak_bonus", reward.bonus_xp, reward.multiplier, key + ":bonus",
            f"{policy.streak_bonus_period_days}-day streak bonus: {streak} days in a row{pro_note}",
        ))
    return entries


def _details(partner_id: int, day: date, streak: int, reward: CheckinReward, xp_after: int,
             frozen_days: int) -> dict[str, Any]:
    return {
        "partner_id": partner_id,
        "day": day.isoformat(),
        "streak": streak,
        "frozen_days": frozen_days,
        "base_xp": reward.base_xp,
        "bonus_xp": reward.bonus_xp,
        "multiplier": reward.multiplier,
        "xp_granted": reward.xp_granted,
        "xp_after": xp_after,
    }
