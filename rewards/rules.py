"""The reward rules: plain values in, plain values out.

No database, no clock, no Celery. The write path (`rewards.ledger`) and the
read side (reward previews) both price things with these functions, so a
preview is always what the job then pays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Policy:
    """The amounts the rules pay; defaults are the reference document's."""

    checkin_xp: int = 10
    streak_bonus_xp: int = 150
    streak_bonus_period_days: int = 7
    pro_xp_multiplier: int = 5
    # How far back, in the partner's local days before their latest check-in,
    # a late job is still applied and re-priced (not an amount: not in `version`).
    late_window_days: int = 7

    @property
    def version(self) -> str:
        """A short stable name for these amounts, stored on every ledger row they priced."""
        amounts = (
            f"{self.checkin_xp}/{self.streak_bonus_xp}/"
            f"{self.streak_bonus_period_days}/{self.pro_xp_multiplier}"
        )
        return "rules-" + hashlib.sha256(amounts.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class CheckinReward:
    base_xp: int
    bonus_xp: int
    multiplier: int

    @property
    def xp_granted(self) -> int:
        return (self.base_xp + self.bonus_xp) * self.multiplier


def local_day(occurred_at: datetime, timezone: str) -> date:
    """The calendar day `occurred_at` falls on in the partner's IANA time zone."""
    if occurred_at.tzinfo is None:
        raise ValueError("occurred_at must carry a UTC offset")
    return occurred_at.astimezone(ZoneInfo(timezone)).date()


def is_pro(pro_until: datetime | None, at: datetime) -> bool:
    """PRO at instant `at` when `pro_until` is set and still ahead of it."""
    return pro_until is not None and at < pro_until


def holds_at_same_instant(value: Any, other: Any) -> bool:
    """Of two different values an update set at the very same instant, whether `value` holds.

    The greater one does (a later PRO end, None meaning "not PRO" being the
    least), whichever was processed first: the outcome must not depend on
    arrival order, and for PRO it favours the partner.
    """
    return (value is not None, value) > (other is not None, other)


def next_streak_days(previous_streak_days: int, last_checkin_day: date | None, day: date) -> int:
    """The streak after checking in on `day`, with no freeze: one more than yesterday's, else a fresh 1."""
    return next_streak(previous_streak_days, last_checkin_day, day, pro=False,
                       freeze_available=False).streak_days


@dataclass(frozen=True)
class StreakStep:
    """A check-in's place in its streak, and how many missed days a freeze bridged to get there."""

    streak_days: int
    frozen_days: int


def streak_continues(last_checkin_day: date | None, day: date, pro: bool,
                     freeze_available: bool) -> tuple[bool, int]:
    """Whether a check-in on `day` continues the streak that ended on `last_checkin_day`.

    The one rule both the check-in path and streak expiry follow; returns
    (continues, frozen_days). Nothing missed (`day` is the next day, or the
    partner already checked in on it) continues. A single missed day is
    bridged for a PRO partner with a freeze left, using it. Anything else
    breaks the streak.
    """
    if last_checkin_day is None:
        return False, 0
    gap_days = (day - last_checkin_day).days
    if gap_days <= 1:
        return True, 0
    if gap_days == 2 and pro and freeze_available:
        return True, 1
    return False, 0


def next_streak(previous_streak_days: int, last_checkin_day: date | None, day: date, *,
                pro: bool, freeze_available: bool) -> StreakStep:
    """The streak after checking in on `day`: previous + 1 when it continues, else a fresh 1.

    A frozen day keeps the streak alive without adding to it, so a bridged
    check-in is also previous + 1. A streak already at 0 has nothing to keep,
    so no freeze is spent on it.
    """
    continues, frozen_days = streak_continues(last_checkin_day, day, pro, freeze_available)
    if not continues or previous_streak_days == 0:
        return StreakStep(streak_days=1, frozen_days=0)
    return StreakStep(streak_days=previous_streak_days + 1, frozen_days=frozen_days)


@dataclass(frozen=True)
class DayCheckin:
    """A check-in as the streak rules see it: its local day, and whether PRO at its instant."""

    day: date
    pro: bool


@dataclass(frozen=True)
class PricedCheckin:
    day: date
    streak_days: int
    frozen_days: int
    reward: CheckinReward


def price_checkins(checkins: list[DayCheckin], *, previous_day: date | None, previous_streak_days: int,
                   freeze_weeks_used: frozenset[str], policy: Policy) -> list[PricedCheckin]:
    """Streak, freeze and reward of each check-in, in day order, continuing a history.

    `previous_day` and `previous_streak_days` are the check-in just before
    them; `freeze_weeks_used`, the ISO weeks whose freeze earlier check-ins
    spent. Each check-in takes the week's freeze if it needs one and it is
    free, exactly as it would have in order, so pricing a partner's days
    with this function gives the same result whatever order they arrived in.
    """
    last_day, streak_days, used = previous_day, previous_streak_days, set(freeze_weeks_used)
    priced = []
    for checkin in sorted(checkins, key=lambda item: item.day):
        week = iso_week(frozen_day(last_day)) if last_day is not None else None
        step = next_streak(streak_days, last_day, checkin.day, pro=checkin.pro,
                           freeze_available=week not in used)
        if step.frozen_days:
            used.add(week)
        priced.append(PricedCheckin(checkin.day, step.streak_days, step.frozen_days,
                                    checkin_reward(step.streak_days, checkin.pro, policy)))
        last_day, streak_days = checkin.day, step.streak_days
    return priced


def frozen_day(last_checkin_day: date) -> date:
    """The missed day a freeze bridges: the one after the last check-in."""
    return last_checkin_day + timedelta(days=1)


def iso_week(day: date) -> str:
    """The ISO week `day` falls in, e.g. '2026-W02': the unit of the one-freeze-a-week allowance.

    A freeze counts against the week of the day it bridges (the missed day),
    not the week of the check-in that used it: the allowance protects that
    week's days, and the expiry job, which sees only the missed day, reaches
    the same answer as the check-in that comes later.
    """
    year, week, _ = day.isocalendar()
    return f"{year:04d}-W{week:02d}"


# Streak badges, awarded once each, on the check-in whose streak reaches the threshold.
STREAK_BADGES: tuple[tuple[int, str], ...] = (
    (7, "consistency_champion"),
    (30, "elite_operator"),
    (100, "legendary_status"),
)


def badge_reached(streak_days: int) -> str | None:
    """The badge a streak of exactly `streak_days` earns, if any.

    A streak grows one day at a time, so it passes through every threshold
    exactly: checking equality keeps the other days free of badge writes.
    """
    for threshold_days, badge in STREAK_BADGES:
        if streak_days == threshold_days:
            return badge
    return None


def is_milestone(streak_days: int, policy: Policy) -> bool:
    """A streak at a whole number of bonus periods (7, 14, 21 … days) is a milestone."""
    return streak_days > 0 and streak_days % policy.streak_bonus_period_days == 0


def checkin_reward(streak_days: int, pro: bool, policy: Policy) -> CheckinReward:
    """Base XP, the streak bonus on every full period, and the PRO multiplier on both."""
    if streak_days < 1:
        raise ValueError(f"a check-in has a streak of at least 1 day, got {streak_days}")
    on_bonus_day = streak_days % policy.streak_bonus_period_days == 0
    return CheckinReward(
        base_xp=policy.checkin_xp,
        bonus_xp=policy.streak_bonus_xp if on_bonus_day else 0,
        multiplier=policy.pro_xp_multiplier if pro else 1,
    )


@dataclass(frozen=True)
class Progress:
    """How far a task attempt is: `current` of `required` (0 required: nothing to do)."""

    current: int
    required: int

    @property
    def met(self) -> bool:
        return self.current >= self.required

    def __str__(self) -> str:
        return f"{self.current}/{self.required}"


@dataclass(frozen=True)
class TaskReward:
    base_xp: int
    multiplier: int

    @property
    def xp_granted(self) -> int:
        return self.base_xp * self.multiplier


def social_progress() -> Progress:
    """Social tasks have no requirement: the upstream app verified the action before the claim."""
    return Progress(current=0, required=0)


def referral_progress(referral_count: int, initial_referral_count: int, required: int) -> Progress:
    """Friends referred since the task started."""
    return Progress(current=max(0, referral_count - initial_referral_count), required=required)


def action_progress(latest_streak_days: int, checkin_days_since_start: int, required: int) -> Progress:
    """Consecutive check-in days on or after the start day, ending at the latest check-in.

    `latest_streak_days` is the streak of the latest check-in (the run of days
    ending there); `checkin_days_since_start` counts check-in days from the
    start day on. When the run began before the start day, every check-in
    day since the start is in it; otherwise the run lies wholly after the
    start. Either way the smaller number is the run's part since the start,
    and a streak broken after the start never makes it negative (the
    reference document's `current - initial` did).
    """
    return Progress(current=max(0, min(latest_streak_days, checkin_days_since_start)), required=required)


def task_reward(reward_xp: int, pro: bool, policy: Policy) -> TaskReward:
    """A task's catalogue reward, times the PRO multiplier when PRO at the claim's instant."""
    if reward_xp < 1:
        raise ValueError(f"a task pays at least 1 XP, got {reward_xp}")
    return TaskReward(base_xp=reward_xp, multiplier=policy.pro_xp_multiplier if pro else 1)
