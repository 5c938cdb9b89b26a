"""Re-pricing a partner's recent days after a late job, with append-only corrections.

Queues reorder jobs, but a partner's rewards are a function of the set of
their jobs, not of arrival order (DESIGN.md section 6a). When a check-in for
an earlier day, or a PRO change for an earlier instant, arrives after later
jobs were paid, `reprice_checkins` prices the partner's days from that day on
again with `rules.price_checkins` — the same fold an in-order run amounts to —
and for each day whose price moved:

- updates the day's `checkin` row to its current streak and price,
  revision + 1;
- posts the difference as a `correction` ledger row keyed
  `checkin:{partner}:{day}:correction:{revision}`; the ledger is never rewritten;
- rebuilds the freezes those days use, emits the milestones and freezes they
  now reach (keyed events: each at most once), and brings the partner's
  badges in line with the longest streak.

`reprice_claims` does the same for completed task attempts after a late PRO
change. Everything happens in the job's transaction under the partner lock,
bounded by the late window: at most `late_window_days + 1` days per partner.

A correction can be negative (a bonus moves from a PRO day to a regular one).
Positive ones are posted first; if the balance still cannot cover a
deduction (an operator had deducted XP meanwhile), the balance stops at 0 and
the day's `xp_shortfall` records what the ledger could not take back, which
the reconciler reports.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Row, bindparam, delete, func, insert, select, update

from rewards import rules
from rewards.contract import keys
from rewards.contract.results import CheckinCorrection, TaskCorrection
from rewards.ledger import badges, balance, outbox, plans
from rewards.models import checkin, partner_task, streak_freeze
from rewards.rules import DayCheckin, Policy, PricedCheckin

_rows_from = (
    select(checkin).where(checkin.c.partner_id == bindparam("partner_id"), checkin.c.day >= bindparam("day"))
    .order_by(checkin.c.day)
)
_row_before = (
    select(checkin.c.day, checkin.c.streak)
    .where(checkin.c.partner_id == bindparam("partner_id"), checkin.c.day < bindparam("day"))
    .order_by(checkin.c.day.desc()).limit(1)
)
_longest_before = select(func.max(checkin.c.streak)).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.day < bindparam("day"))
# Freezes spent before the re-priced days, in weeks those days could also use.
_weeks_used_before = select(streak_freeze.c.iso_week).where(
    streak_freeze.c.partner_id == bindparam("partner_id"),
    streak_freeze.c.checkin_day < bindparam("day"),
    streak_freeze.c.frozen_day >= bindparam("earliest_frozen_day"),
)
_drop_freezes_from = delete(streak_freeze).where(
    streak_freeze.c.partner_id == bindparam("partner_id"), streak_freeze.c.checkin_day >= bindparam("day"))
_insert_freezes = insert(streak_freeze)
_insert_checkin = insert(checkin)
_update_checkin = (
    update(checkin)
    .where(checkin.c.partner_id == bindparam("b_partner_id"), checkin.c.day == bindparam("b_day"))
    .values(streak=bindparam("streak"), frozen_days=bindparam("frozen_days"), base_xp=bindparam("base_xp"),
            bonus_xp=bindparam("bonus_xp"), multiplier=bindparam("multiplier"),
            xp_granted=bindparam("xp_granted"), revision=bindparam("revision"),
            xp_shortfall=bindparam("xp_shortfall"))
)
_completed_since = (
    select(partner_task)
    .where(partner_task.c.partner_id == bindparam("partner_id"), partner_task.c.status == "COMPLETED",
           partner_task.c.completed_at >= bindparam("since"))
    .order_by(partner_task.c.completed_at)
)
_update_attempt = (
    update(partner_task)
    .where(partner_task.c.partner_id == bindparam("b_partner_id"), partner_task.c.task_id == bindparam("b_task_id"),
           partner_task.c.attempt == bindparam("b_attempt"))
    .values(multiplier=bindparam("multiplier"), xp_granted=bindparam("xp_granted"),
            revision=bindparam("revision"))
)


@dataclass(frozen=True)
class LateCheckin:
    """The check-in whose late arrival starts the re-pricing: inserted and paid as usual."""

    day: date
    occurred_at: datetime


@dataclass
class Repricing:
    """What re-pricing comes to, gathered before anything is posted."""

    start_day: date | None = None
    priced: list[PricedCheckin] = field(default_factory=list)
    stored: dict[date, Row] = field(default_factory=dict)
    late_priced: PricedCheckin | None = None
    entries: list[balance.Entry] = field(default_factory=list)
    checkin_corrections: list[CheckinCorrection] = field(default_factory=list)
    task_corrections: list[TaskCorrection] = field(default_factory=list)
    # The revision each corrected attempt moves to, by its correction's key.
    task_revisions: dict[str, int] = field(default_factory=dict)
    longest_streak_days: int | None = None


def window_start(last_checkin_day: date | None, policy: Policy) -> date | None:
    """The earliest local day a late job may still change (the bound is the partner's own history)."""
    if last_checkin_day is None:
        return None
    return last_checkin_day - timedelta(days=policy.late_window_days)


def reprice_checkins(conn: Connection, state: Row, start_day: date, *, policy: Policy, cause: str,
                     now: datetime, late: LateCheckin | None = None) -> Repricing:
    """Price the partner's check-ins from `start_day` on again, `late` among them (inserted here)."""
    rows = conn.execute(_rows_from, {"partner_id": state.id, "day": start_day}).fetchall()
    before = conn.execute(_row_before, {"partner_id": state.id, "day": start_day}).first()
    history = plans.history(conn, state.id)
    inputs = [DayCheckin(row.day, history.is_pro(row.occurred_at)) for row in rows]
    if late is not None:
        inputs.append(DayCheckin(late.day, history.is_pro(late.occurred_at)))
    repricing = Repricing(start_day=start_day, stored={row.day: row for row in rows})
    repricing.priced = rules.price_checkins(
        inputs, previous_day=before.day if before else None,
        previous_streak_days=before.streak if before else 0,
        freeze_weeks_used=_weeks_used(conn, state.id, start_day), policy=policy)
    for day_price in repricing.priced:
        if late is not None and day_price.day == late.day:
            _insert_late(conn, state.id, late, day_price, now)
            repricing.late_priced = day_price
            repricing.entries += checkin_entries(state.id, day_price, policy)
        else:
            _reprice_day(state.id, repricing.stored[day_price.day], day_price, cause, repricing)
    longest_before = conn.execute(_longest_before, {"partner_id": state.id, "day": start_day}).scalar() or 0
    repricing.longest_streak_days = max([longest_before] + [day.streak_days for day in repricing.priced])
    return repricing


def post(conn: Connection, state: Row, repricing: Repricing, *, policy: Policy, now: datetime,
         rule_version: str, occurred_at: datetime, checkins_added: int = 0) -> int:
    """Post what re-pricing found: ledger rows, the days' and attempts' rows, freezes, events, badges.

    Returns the balance after. The partner's streak and longest streak move
    in the same statement as the balance.
    """
    _settle(state, repricing)
    _write_days(conn, state.id, repricing)
    _write_attempts(conn, state.id, repricing)
    also_set = {}
    if repricing.priced:
        _rebuild_freezes(conn, state.id, repricing.start_day, repricing.priced, now)
        _streak_events(conn, state.id, repricing.priced, policy, now)
        badges.sync(conn, state.id, repricing.longest_streak_days, repricing.priced, now)
        # A streak that expiry already ended stays ended: the latest day did not move.
        latest_streak_days = repricing.priced[-1].streak_days if state.checkin_streak > 0 else 0
        also_set = {"checkin_streak": latest_streak_days, "longest_streak": repricing.longest_streak_days}
    return balance.credit(conn, state.id, repricing.entries, occurred_at=occurred_at,
                          rule_version=rule_version, now=now, also_set=also_set,
                          also_add={"total_checkins": checkins_added} if checkins_added else None)


def checkin_entries(partner_id: int, priced: PricedCheckin, policy: Policy) -> list[balance.Entry]:
    """The ledger rows that pay a check-in: the day's XP, and the streak bonus on its own row."""
    reward = priced.reward
    pro_note = f" (PRO ×{reward.multiplier})" if reward.multiplier > 1 else ""
    entries = [balance.Entry(
        "checkin", reward.base_xp, reward.multiplier, keys.checkin_key(partner_id, priced.day),
        f"Daily check-in for {priced.day}, day {priced.streak_days} of your streak{pro_note}")]
    if reward.bonus_xp:
        entries.append(balance.Entry(
            "streak_bonus", reward.bonus_xp, reward.multiplier, keys.streak_bonus_key(partner_id, priced.day),
            f"{policy.streak_bonus_period_days}-day streak bonus: {priced.streak_days} days in a row{pro_note}"))
    return entries


def _weeks_used(conn: Connection, partner_id: int, start_day: date) -> frozenset[str]:
    # A week has 7 days: a freeze of the same ISO week as any re-priced day's
    # frozen day (start_day - 1 or later) bridged a day at most 7 days before it.
    rows = conn.execute(_weeks_used_before, {"partner_id": partner_id, "day": start_day,
                                             "earliest_frozen_day": start_day - timedelta(days=8)})
    return frozenset(rows.scalars())


def _insert_late(conn: Connection, partner_id: int, late: LateCheckin, priced: PricedCheckin,
                 now: datetime) -> None:
    reward = priced.reward
    conn.execute(_insert_checkin, {
        "partner_id": partner_id, "day": late.day, "streak": priced.streak_days,
        "base_xp": reward.base_xp, "bonus_xp": reward.bonus_xp, "multiplier": reward.multiplier,
        "xp_granted": reward.xp_granted, "occurred_at": late.occurred_at,
        "frozen_days": priced.frozen_days, "created_at": now,
    })


def _reprice_day(partner_id: int, row: Row, priced: PricedCheckin, cause: str, repricing: Repricing) -> None:
    """A correction for a stored day whose price moved (a streak-only change needs none)."""
    reward = priced.reward
    delta_xp = reward.xp_granted - row.xp_granted
    if not delta_xp:
        return
    key = keys.checkin_correction_key(partner_id, row.day, row.revision + 1)
    description = (f"Correction for {row.day} after {cause}: day {row.streak} → day {priced.streak_days} "
                   f"of your streak, bonus {row.bonus_xp} → {reward.bonus_xp} XP, "
                   f"×{row.multiplier} → ×{reward.multiplier}: {row.xp_granted} → {reward.xp_granted} XP")
    repricing.entries.append(balance.Entry("correction", delta_xp, 1, key, description))
    repricing.checkin_corrections.append(CheckinCorrection(
        key=key, day=row.day, streak_was=row.streak, streak=priced.streak_days, xp_was=row.xp_granted,
        xp_granted=reward.xp_granted, xp_posted=delta_xp))


def _settle(state: Row, repricing: Repricing) -> None:
    """Order the entries credits first, and stop a deduction the balance cannot cover at 0.

    What a clipped correction could not take back is recorded on its day
    (`xp_shortfall`) or its attempt (whose `xp_granted` then says what was
    paid); see the module's docstring.
    """
    balance_xp, settled, posted = state.xp, [], {}
    for entry in sorted(repricing.entries, key=lambda entry: entry.amount < 0):
        amount = max(entry.amount, -balance_xp)
        balance_xp += amount
        posted[entry.idempotency_key] = amount
        if amount == entry.amount:
            settled.append(entry)
        elif amount:  # only corrections (multiplier 1) are ever clipped
            settled.append(balance.Entry(entry.entry_type, amount, 1, entry.idempotency_key, entry.description))
    repricing.entries = settled
    repricing.checkin_corrections = [replace(c, xp_posted=posted[c.key]) for c in repricing.checkin_corrections]
    repricing.task_corrections = [replace(c, xp_posted=posted[c.key]) for c in repricing.task_corrections]


def _write_days(conn: Connection, partner_id: int, repricing: Repricing) -> None:
    """Bring each stored day's row to its current streak and price."""
    corrections = {c.day: c for c in repricing.checkin_corrections}
    for day_price in repricing.priced:
        row = repricing.stored.get(day_price.day)
        if row is None or _unchanged(row, day_price):
            continue
        correction = corrections.get(row.day)
        unrecovered_xp = correction.xp_posted - (correction.xp_granted - correction.xp_was) if correction else 0
        reward = day_price.reward
        conn.execute(_update_checkin, {
            "b_partner_id": partner_id, "b_day": row.day, "streak": day_price.streak_days,
            "frozen_days": day_price.frozen_days, "base_xp": reward.base_xp, "bonus_xp": reward.bonus_xp,
            "multiplier": reward.multiplier, "xp_granted": reward.xp_granted,
            "revision": row.revision + (1 if correction else 0),
            "xp_shortfall": row.xp_shortfall + unrecovered_xp,
        })


def _write_attempts(conn: Connection, partner_id: int, repricing: Repricing) -> None:
    for correction in repricing.task_corrections:
        conn.execute(_update_attempt, {
            "b_partner_id": partner_id, "b_task_id": correction.task_id, "b_attempt": correction.attempt,
            "multiplier": correction.multiplier, "xp_granted": correction.xp_was + correction.xp_posted,
            "revision": repricing.task_revisions[correction.key],
        })


def _unchanged(row: Row, priced: PricedCheckin) -> bool:
    reward = priced.reward
    return (row.streak, row.frozen_days, row.base_xp, row.bonus_xp, row.multiplier) == (
        priced.streak_days, priced.frozen_days, reward.base_xp, reward.bonus_xp, reward.multiplier)


def _rebuild_freezes(conn: Connection, partner_id: int, start_day: date, priced: list[PricedCheckin],
                     now: datetime) -> None:
    conn.execute(_drop_freezes_from, {"partner_id": partner_id, "day": start_day})
    rows = [{"partner_id": partner_id, "iso_week": rules.iso_week(day.day - timedelta(days=1)),
             "frozen_day": day.day - timedelta(days=1), "checkin_day": day.day, "created_at": now}
            for day in priced if day.frozen_days]
    if rows:
        conn.execute(_insert_freezes, rows)


def _streak_events(conn: Connection, partner_id: int, priced: list[PricedCheckin], policy: Policy,
                   now: datetime) -> None:
    """Milestones and freezes the re-priced days reach; keyed, so each is emitted at most once."""
    events = []
    for day in priced:
        if day.frozen_days:
            events.append(freeze_event(partner_id, day))
        if rules.is_milestone(day.streak_days, policy):
            events.append(milestone_event(partner_id, day))
    outbox.emit_many(conn, events, now=now)


def freeze_event(partner_id: int, priced: PricedCheckin) -> outbox.Event:
    missed_day = priced.day - timedelta(days=1)
    week = rules.iso_week(missed_day)
    return outbox.Event(outbox.STREAK_FREEZE_USED, partner_id, {
        "frozen_day": missed_day.isoformat(), "iso_week": week, "checkin_day": priced.day.isoformat(),
        "streak": priced.streak_days,
    }, key=keys.key(keys.STREAK_FREEZE_EVENT, partner_id=partner_id, iso_week=week))


def milestone_event(partner_id: int, priced: PricedCheckin) -> outbox.Event:
    reward = priced.reward
    return outbox.Event(outbox.CHECKIN_MILESTONE, partner_id, {
        "streak": priced.streak_days, "day": priced.day.isoformat(), "bonus_xp": reward.bonus_xp,
        "multiplier": reward.multiplier, "xp_granted": reward.xp_granted,
    }, key=keys.key(keys.MILESTONE_EVENT, partner_id=partner_id, day=priced.day))


def reprice_claims(conn: Connection, state: Row, since: datetime, *, window_start_day: date | None,
                   policy: Policy, cause: str, repricing: Repricing) -> None:
    """Re-price attempts claimed at or after `since` (inside the window) by the plan history."""
    history = plans.history(conn, state.id)
    for attempt in conn.execute(_completed_since, {"partner_id": state.id, "since": since}):
        claimed_day = rules.local_day(attempt.completed_at, state.timezone)
        multiplier = policy.pro_xp_multiplier if history.is_pro(attempt.completed_at) else 1
        if (window_start_day is not None and claimed_day < window_start_day) or multiplier == attempt.multiplier:
            continue
        xp_granted = attempt.xp_granted // attempt.multiplier * multiplier
        key = keys.task_correction_key(state.id, attempt.task_id, attempt.attempt, attempt.revision + 1)
        repricing.entries.append(balance.Entry(
            "correction", xp_granted - attempt.xp_granted, 1, key,
            f"Correction for task {attempt.task_id} after {cause}: ×{attempt.multiplier} → ×{multiplier}: "
            f"{attempt.xp_granted} → {xp_granted} XP"))
        repricing.task_corrections.append(TaskCorrection(
            key=key, task_id=attempt.task_id, attempt=attempt.attempt, multiplier_was=attempt.multiplier,
            multiplier=multiplier, xp_was=attempt.xp_granted, xp_granted=xp_granted,
            xp_posted=xp_granted - attempt.xp_granted))
        repricing.task_revisions[key] = attempt.revision + 1
