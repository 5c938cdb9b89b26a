"""The reference model: what every partner must end with, from DESIGN.md section 4 alone.

It is written from the rules, not from the engine: no import from `rewards`.
It is the in-order fold of the rules (DESIGN.md sections 4 and 6a): the
unique jobs of each batch are applied sorted by occurred_at, whatever order
the harness delivered them in, and it returns each partner's expected
figures and each job's expected status. Streaks count consecutive local
days; a PRO partner (at the check-in's instant) who misses a single day has
it bridged once per ISO week of the missed day, without adding to the streak.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

CHECKIN_XP = 10
STREAK_BONUS_XP = 150
STREAK_BONUS_PERIOD_DAYS = 7
PRO_XP_MULTIPLIER = 5
# The catalogue's defaults (DESIGN.md section 4): reward and referral requirement.
TASKS = {"telegram_bot": (100, 0), "banking_app": (150, 0), "invite_3_friends": (500, 3)}


@dataclass
class Partner:
    xp: int = 0
    streak: int = 0
    last_day: date | None = None
    checkins: int = 0
    referral_count: int = 0
    pro_until: datetime | None = None
    timezone: str = "UTC"
    started: dict[str, int] = field(default_factory=dict)   # task → referral_count at start
    completed: set[str] = field(default_factory=set)
    freeze_weeks: set[tuple[int, int]] = field(default_factory=set)  # ISO (year, week) of each bridged day

    def multiplier(self, at: datetime) -> int:
        return PRO_XP_MULTIPLIER if self.pro_until is not None and at < self.pro_until else 1


class Model:
    def __init__(self) -> None:
        self.partners: dict[int, Partner] = {}

    def fold(self, jobs: list) -> list[tuple[object, str]]:
        """Apply unique jobs (each with .name and .kwargs) in occurred_at order; returns (job, status) pairs."""
        ordered = sorted(jobs, key=lambda job: job.kwargs.get("occurred_at", ""))
        return [(job, self.apply(job.name, job.kwargs)) for job in ordered]

    def partner(self, partner_id: int) -> Partner:
        return self.partners.setdefault(partner_id, Partner())

    def apply(self, name: str, kwargs: dict) -> str:
        """Apply one unique job; returns "applied" or "rejected:<reason>"."""
        handler = getattr(self, "_" + name.removeprefix("rewards.").replace(".", "_"))
        return handler(**kwargs)

    def _checkin(self, partner_id: int, occurred_at: str) -> str:
        p = self.partner(partner_id)
        at = datetime.fromisoformat(occurred_at)
        day = at.astimezone(ZoneInfo(p.timezone)).date()
        p.streak = p.streak + 1 if self._continues(p, day, pro=p.multiplier(at) > 1) else 1
        bonus = STREAK_BONUS_XP if p.streak % STREAK_BONUS_PERIOD_DAYS == 0 else 0
        p.xp += (CHECKIN_XP + bonus) * p.multiplier(at)
        p.last_day, p.checkins = day, p.checkins + 1
        return "applied"

    @staticmethod
    def _continues(p: Partner, day: date, pro: bool) -> bool:
        if p.last_day is None:
            return False
        gap_days = (day - p.last_day).days
        if gap_days == 1:
            return True
        missed_week = (p.last_day + timedelta(days=1)).isocalendar()[:2]
        if gap_days == 2 and pro and missed_week not in p.freeze_weeks:
            p.freeze_weeks.add(missed_week)
            return True
        return False

    def _partner_update(self, partner_id: int, occurred_at: str, pro_until: str | None = None,
                        timezone: str | None = None) -> str:
        p = self.partner(partner_id)
        if pro_until is not None:
            p.pro_until = datetime.fromisoformat(pro_until)
        if timezone is not None:
            p.timezone = timezone
        return "applied"

    def _task_start(self, partner_id: int, task_id: str, occurred_at: str) -> str:
        p = self.partner(partner_id)
        p.started[task_id] = p.referral_count
        return "applied"

    def _task_claim(self, partner_id: int, task_id: str, occurred_at: str) -> str:
        p = self.partner(partner_id)
        if task_id not in p.started:
            return "rejected:not_started"
        reward_xp, required = TASKS[task_id]
        if p.referral_count - p.started[task_id] < required:
            return "rejected:requirement_not_met"
        p.xp += reward_xp * p.multiplier(datetime.fromisoformat(occurred_at))
        p.completed.add(task_id)
        return "applied"

    def _referral_record(self, referrer_id: int, referee_id: int, occurred_at: str) -> str:
        if referrer_id == referee_id:
            return "rejected:self_referral"
        self.partner(referrer_id).referral_count += 1
        self.partner(referee_id)
        return "applied"

    def _adjust(self, partner_id: int, amount: int, reason: str, request_id: str) -> str:
        self.partner(partner_id).xp += amount
        return "applied"
