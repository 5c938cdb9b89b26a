"""The reference model: what every partner must end with, from DESIGN.md sections 4 and 6a alone.

It is written from the rules, not from the engine: no import from `rewards`.
Two harnesses use it. `make chaos` (chaos/check.py) folds the unique jobs of
each batch sorted by occurred_at, whatever order they were delivered in, and
compares each job's status and each partner's figures. The integration
tier's oracle (tests/support/oracle.py) rebuilds the jobs each partner had
applied from the database's input facts and compares balances, each day's
streak and price, each attempt's price and the badges.

A partner's figures are computed from the set of what was applied, never
kept as running totals: a day's streak is the in-order fold of the streak
rule over the partner's check-in days, and a price uses PRO as the plan
history says it was at the check-in's or claim's instant. So a late
check-in re-prices the days after it, and a late PRO change the check-ins
and claims it covers, exactly as section 6a asks of the engine.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

CHECKIN_XP = 10
STREAK_BONUS_XP = 150
STREAK_BONUS_PERIOD_DAYS = 7
PRO_XP_MULTIPLIER = 5
LATE_WINDOW_DAYS = 7
STREAK_BADGES = {7: "consistency_champion", 30: "elite_operator", 100: "legendary_status"}


@dataclass(frozen=True)
class Task:
    type: str            # social, referral or action
    reward_xp: int
    requirement: int = 0


# The catalogue's defaults (DESIGN.md section 4).
TASKS = {
    "telegram_bot": Task("social", 100), "banking_app": Task("social", 150),
    "community_chat": Task("social", 100), "ambassador_hub": Task("social", 200),
    "invite_3_friends": Task("referral", 500, 3), "daily_checkin_5": Task("action", 250, 5),
    "invite_10_friends": Task("referral", 1000, 10),
}


def load_catalog(path: Path) -> dict[str, Task]:
    """A catalogue file (the data upstream edits), read without the engine's loader."""
    tasks = tomllib.loads(path.read_text())["tasks"]
    return {task_id: Task(spec["type"], spec["reward_xp"], spec.get("requirement", 0))
            for task_id, spec in tasks.items()}


def instant(value: str | datetime) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


@dataclass(frozen=True)
class DayPrice:
    """One check-in day as the rules price it."""

    day: date
    streak_days: int
    frozen_days: int
    bonus_xp: int
    multiplier: int

    @property
    def xp_granted(self) -> int:
        return (CHECKIN_XP + self.bonus_xp) * self.multiplier


@dataclass
class Attempt:
    task_id: str
    attempt: int
    started_at: datetime
    start_day: date
    initial_referrals: int
    completed_at: datetime | None = None


@dataclass
class Partner:
    timezone: str = "UTC"
    checkin_days: dict[date, datetime] = field(default_factory=dict)    # local day → occurred_at
    plan_changes: dict[datetime, datetime | None] = field(default_factory=dict)  # instant → pro_until
    # PRO that no change set (a plan older than every instant): None for a partner created by a job.
    pro_until_always: datetime | None = None
    referral_count: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    adjustments_xp: int = 0
    catalog: dict[str, Task] = field(default_factory=lambda: TASKS)

    def is_pro(self, at: datetime) -> bool:
        """PRO at `at` by the latest plan change at or before it (DESIGN.md section 4)."""
        earlier = [changed_at for changed_at in self.plan_changes if changed_at <= at]
        pro_until = self.plan_changes[max(earlier)] if earlier else self.pro_until_always
        return pro_until is not None and at < pro_until

    def multiplier(self, at: datetime) -> int:
        return PRO_XP_MULTIPLIER if self.is_pro(at) else 1

    def days(self) -> list[DayPrice]:
        """Each check-in day's streak and price: the rules folded over the days in order."""
        priced: list[DayPrice] = []
        freeze_weeks: set[tuple[int, int]] = set()
        for day in sorted(self.checkin_days):
            pro = self.is_pro(self.checkin_days[day])
            streak_days, frozen_days = _next_streak(priced[-1] if priced else None, day, pro, freeze_weeks)
            bonus_xp = STREAK_BONUS_XP if streak_days % STREAK_BONUS_PERIOD_DAYS == 0 else 0
            priced.append(DayPrice(day, streak_days, frozen_days, bonus_xp, PRO_XP_MULTIPLIER if pro else 1))
        return priced

    def task_xp(self, attempt: Attempt) -> int:
        return self.catalog[attempt.task_id].reward_xp * self.multiplier(attempt.completed_at)

    @property
    def completed(self) -> set[str]:
        return {a.task_id for a in self.attempts if a.completed_at is not None}

    @property
    def xp(self) -> int:
        paid = [self.task_xp(a) for a in self.attempts if a.completed_at is not None]
        return sum(day.xp_granted for day in self.days()) + sum(paid) + self.adjustments_xp

    @property
    def streak(self) -> int:
        days = self.days()
        return days[-1].streak_days if days else 0

    @property
    def longest_streak(self) -> int:
        return max((day.streak_days for day in self.days()), default=0)

    @property
    def checkins(self) -> int:
        return len(self.checkin_days)

    @property
    def badges(self) -> set[str]:
        longest = self.longest_streak
        return {badge for threshold, badge in STREAK_BADGES.items() if longest >= threshold}

    def action_progress(self, start_day: date, latest_only: bool) -> int:
        """Consecutive check-in days on or after `start_day` ending at the latest check-in.

        With `latest_only` False, the best such run ending at any day: what
        the latest check-in could have been when a claim ran before later
        days were added (an upper bound of the progress a claim saw).
        """
        runs = []
        for index, day in enumerate(d for d in self.days() if d.day >= start_day):
            runs.append(min(day.streak_days, index + 1))
        if not runs:
            return 0
        return runs[-1] if latest_only else max(runs)


def _next_streak(previous: DayPrice | None, day: date, pro: bool,
                 freeze_weeks: set[tuple[int, int]]) -> tuple[int, int]:
    """(streak, frozen days) of a check-in on `day` after `previous`: a PRO partner's single missed
    day is bridged once per ISO week of the missed day, and the frozen day adds nothing."""
    if previous is None:
        return 1, 0
    gap_days = (day - previous.day).days
    if gap_days == 1:
        return previous.streak_days + 1, 0
    missed_week = (previous.day + timedelta(days=1)).isocalendar()[:2]
    if gap_days == 2 and pro and missed_week not in freeze_weeks:
        freeze_weeks.add(missed_week)
        return previous.streak_days + 1, 1
    return 1, 0


class Model:
    def __init__(self, catalog: dict[str, Task] | None = None) -> None:
        self.partners: dict[int, Partner] = {}
        self.catalog = catalog or TASKS

    def fold(self, jobs: list) -> list[tuple[object, str]]:
        """Apply unique jobs (each with .name and .kwargs) in occurred_at order; returns (job, status) pairs."""
        ordered = sorted(jobs, key=lambda job: job.kwargs.get("occurred_at", ""))
        return [(job, self.apply(job.name, job.kwargs)) for job in ordered]

    def partner(self, partner_id: int) -> Partner:
        if partner_id not in self.partners:
            self.partners[partner_id] = Partner(catalog=self.catalog)
        return self.partners[partner_id]

    def apply(self, name: str, kwargs: dict) -> str:
        """Apply one unique job; returns "applied", "duplicate" or "rejected:<reason>"."""
        handler = getattr(self, "_" + name.removeprefix("rewards.").replace(".", "_"))
        return handler(**kwargs)

    def _checkin(self, partner_id: int, occurred_at: str | datetime, timezone: str | None = None) -> str:
        """A check-in; `timezone` overrides the partner's when the caller knows the zone in force
        when the engine processed it (time-zone changes apply to check-ins processed after them)."""
        p = self.partner(partner_id)
        at = instant(occurred_at)
        day = at.astimezone(ZoneInfo(timezone or p.timezone)).date()
        latest_day = max(p.checkin_days, default=None)
        if day in p.checkin_days:
            return "duplicate"
        if latest_day is not None and day < latest_day and at >= p.checkin_days[latest_day]:
            return "duplicate"  # a zone change moved this instant onto a day not after the latest
        if latest_day is not None and day < latest_day - timedelta(days=LATE_WINDOW_DAYS):
            return "rejected:too_late"
        p.checkin_days[day] = at
        return "applied"

    def _partner_update(self, partner_id: int, occurred_at: str | datetime, pro_until: str | None = "unset",
                        timezone: str | None = None) -> str:
        p = self.partner(partner_id)
        if pro_until != "unset":
            at = instant(occurred_at)
            value = None if pro_until is None else instant(pro_until)
            recorded = p.plan_changes.get(at, value)
            # Two changes stamped the same instant: the later PRO end holds (None being the least).
            p.plan_changes[at] = max(recorded, value, key=lambda v: (v is not None, v or at))
        if timezone is not None:
            p.timezone = timezone
        return "applied"

    def _task_start(self, partner_id: int, task_id: str, occurred_at: str | datetime) -> str:
        p = self.partner(partner_id)
        if task_id not in self.catalog:
            return "rejected:unknown_task"
        live = [a for a in p.attempts if a.task_id == task_id]
        if live and live[-1].completed_at is not None:
            return "rejected:already_completed"
        if live:
            return "duplicate"
        at = instant(occurred_at)
        initial = p.referral_count if self.catalog[task_id].type == "referral" else 0
        p.attempts.append(Attempt(task_id, 1, at, at.astimezone(ZoneInfo(p.timezone)).date(), initial))
        return "applied"

    def _task_claim(self, partner_id: int, task_id: str, occurred_at: str | datetime) -> str:
        p = self.partner(partner_id)
        if task_id not in self.catalog:
            return "rejected:unknown_task"
        live = [a for a in p.attempts if a.task_id == task_id]
        if not live:
            return "rejected:not_started"
        if live[-1].completed_at is not None:
            return "duplicate"
        if self.progress(p, live[-1], latest_only=True) < self.catalog[task_id].requirement:
            return "rejected:requirement_not_met"
        live[-1].completed_at = instant(occurred_at)
        return "applied"

    def progress(self, p: Partner, attempt: Attempt, latest_only: bool) -> int:
        task = self.catalog[attempt.task_id]
        if task.type == "referral":
            return max(0, p.referral_count - attempt.initial_referrals)
        if task.type == "action":
            return p.action_progress(attempt.start_day, latest_only)
        return 0

    def _referral_record(self, referrer_id: int, referee_id: int, occurred_at: str | datetime) -> str:
        if referrer_id == referee_id:
            return "rejected:self_referral"
        self.partner(referrer_id).referral_count += 1
        self.partner(referee_id)
        return "applied"

    def _adjust(self, partner_id: int, amount: int, reason: str, request_id: str) -> str:
        p = self.partner(partner_id)
        if p.xp + amount < 0:
            return "rejected:insufficient_xp"
        p.adjustments_xp += amount
        return "applied"
