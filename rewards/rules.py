"""The reward rules: plain values in, plain values out.

No database, no clock, no Celery. The write path (`rewards.ledger`) and the
read side (reward previews) both price things with these functions, so a
preview is always what the job then pays.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo


@dataclass(frozen=True)
class Policy:
    """The amounts the rules pay; defaults are the reference document's."""

    checkin_xp: int = 10
    streak_bonus_xp: int = 150
    streak_bonus_period_days: int = 7
    pro_xp_multiplier: int = 5

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


def next_streak_days(previous_streak_days: int, last_checkin_day: date | None, day: date) -> int:
    """The streak after checking in on `day`: one more than yesterday's, else a fresh 1."""
    if last_checkin_day is not None and day - last_checkin_day == timedelta(days=1):
        return previous_streak_days + 1
    return 1


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
