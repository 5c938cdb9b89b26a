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
