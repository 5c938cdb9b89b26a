"""The read side: what upstream apps and operators ask about a partner, and the leaderboards.

Plain functions taking a SQLAlchemy Connection and returning frozen
dataclasses, importable by any upstream app:

    from rewards import db, queries
    with db.get_engine().connect() as conn:
        for task in queries.tasks(conn, 42):
            print(task.task_id, task.progress, task.xp_on_claim)

Task progress and the XP a claim would pay come from `rewards.tasks.measure_progress`
and `rewards.tasks.price`, the functions the claim job itself calls, so a
preview is exactly what the claim then pays (for the same instant).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Literal

from sqlalchemy import Connection, Row, bindparam, func, select

from rewards import catalog as catalog_module
from rewards import rules
from rewards import settings as settings_module
from rewards import tasks as tasks_module
from rewards.catalog import Catalog, CatalogTask
from rewards.models import checkin, partner, partner_task, utcnow, xp_ledger
from rewards.rules import Policy, Progress

NOT_STARTED = "NOT_STARTED"
MAX_ROWS = 1_000

_select_partner = select(partner).where(partner.c.id == bindparam("partner_id"))
_select_attempts = (
    select(partner_task)
    .where(partner_task.c.partner_id == bindparam("partner_id"))
    .order_by(partner_task.c.task_id, partner_task.c.attempt)
)
_select_history = (
    select(xp_ledger)
    .where(xp_ledger.c.partner_id == bindparam("partner_id"))
    .order_by(xp_ledger.c.id.desc())
    .limit(bindparam("limit"))
)
_select_month = (
    select(checkin.c.day, checkin.c.streak)
    .where(checkin.c.partner_id == bindparam("partner_id"),
           checkin.c.day.between(bindparam("first_day"), bindparam("last_day")))
)
# Ties go to whoever reached the score first: for XP, the partner whose last
# ledger row (the one that brought the balance to its value) is older.
_last_ledger_id = (
    select(func.max(xp_ledger.c.id)).where(xp_ledger.c.partner_id == partner.c.id).scalar_subquery()
)
_xp_leaders = (
    select(partner.c.id, partner.c.xp.label("score"))
    .where(partner.c.xp > 0)
    .order_by(partner.c.xp.desc(), _last_ledger_id.asc(), partner.c.id.asc())
    .limit(bindparam("limit"))
)
# The current streak as the partner row holds it; streak expiry (maintenance)
# zeroes the streaks of partners who stopped checking in.
_streak_leaders = (
    select(partner.c.id, partner.c.checkin_streak.label("score"))
    .where(partner.c.checkin_streak > 0)
    .order_by(partner.c.checkin_streak.desc(), partner.c.last_checkin_at.asc(), partner.c.id.asc())
    .limit(bindparam("limit"))
)


class UnknownPartner(LookupError):
    def __init__(self, partner_id: int):
        super().__init__(f"no partner {partner_id}")
        self.partner_id = partner_id


@dataclass(frozen=True)
class Profile:
    partner_id: int
    xp: int
    checkin_streak: int
    longest_streak: int
    total_checkins: int
    referral_count: int
    last_checkin_day: date | None
    pro: bool
    pro_until: datetime | None
    timezone: str


@dataclass(frozen=True)
class TaskView:
    task_id: str
    title: str
    type: str
    status: str  # NOT_STARTED, STARTED, COMPLETED or EXPIRED (the latest attempt's)
    attempt: int | None
    progress: Progress  # a not-started task shows what starting it now would count
    claimable: bool
    xp_on_claim: int  # what a claim at the given instant pays; 0 once completed
    reward_xp: int  # the catalogue's base reward


@dataclass(frozen=True)
class HistoryEntry:
    entry_id: int
    occurred_at: datetime
    entry_type: str
    base_amount: int
    multiplier: int
    amount: int
    balance_after: int
    description: str


@dataclass(frozen=True)
class CalendarDay:
    day: date
    checked_in: bool
    streak: int  # the streak that day's check-in made; 0 when missed
    milestone: bool  # a streak bonus day: the streak is a multiple of the bonus period


@dataclass(frozen=True)
class LeaderboardRow:
    rank: int
    partner_id: int
    score: int


def _partner(conn: Connection, partner_id: int) -> Row:
    row = conn.execute(_select_partner, {"partner_id": partner_id}).first()
    if row is None:
        raise UnknownPartner(partner_id)
    return row


def profile(conn: Connection, partner_id: int, *, at: datetime | None = None) -> Profile:
    """The partner's balance, streaks, referrals and plan; raises UnknownPartner."""
    row = _partner(conn, partner_id)
    return Profile(
        partner_id=row.id, xp=row.xp, checkin_streak=row.checkin_streak,
        longest_streak=row.longest_streak, total_checkins=row.total_checkins,
        referral_count=row.referral_count, last_checkin_day=row.last_checkin_day,
        pro=rules.is_pro(row.pro_until, at or utcnow()), pro_until=row.pro_until, timezone=row.timezone,
    )


def tasks(conn: Connection, partner_id: int, *, catalog: Catalog | None = None,
             policy: Policy | None = None, at: datetime | None = None) -> list[TaskView]:
    """Every catalogue task with its status, progress and what a claim at `at` (default now) pays."""
    state = _partner(conn, partner_id)
    catalog = catalog or catalog_module.get()
    policy = policy or settings_module.get().policy
    at = at or utcnow()
    latest: dict[str, Row] = {}
    for attempt in conn.execute(_select_attempts, {"partner_id": partner_id}):
        latest[attempt.task_id] = attempt  # ordered by attempt: the last one wins
    return [_task_view(conn, task, state, latest.get(task.task_id), policy, at)
            for task in catalog.tasks.values()]


def _task_view(conn: Connection, task: CatalogTask, state: Row, attempt: Row | None, policy: Policy,
               at: datetime) -> TaskView:
    status = attempt.status if attempt is not None else NOT_STARTED
    if status == tasks_module.COMPLETED:
        progress = Progress(task.requirement, task.requirement)
    elif status == tasks_module.STARTED:
        progress = tasks_module.measure_progress(conn, task, state, attempt.initial_metric_value,
                                                 attempt.start_day)
    else:  # what starting it now would snapshot and count
        progress = tasks_module.measure_progress(conn, task, state,
                                                 tasks_module.initial_metric_value(task, state),
                                                 rules.local_day(at, state.timezone))
    xp_on_claim = tasks_module.price(task, state.pro_until, at, policy).xp_granted
    return TaskView(
        task_id=task.task_id, title=task.title, type=task.type, status=status,
        attempt=attempt.attempt if attempt is not None else None, progress=progress,
        claimable=status == tasks_module.STARTED and progress.met,
        xp_on_claim=0 if status == tasks_module.COMPLETED else xp_on_claim, reward_xp=task.reward_xp,
    )


def history(conn: Connection, partner_id: int, limit: int = 20) -> list[HistoryEntry]:
    """The partner's ledger rows, newest first, with their descriptions."""
    _check_limit(limit)
    _partner(conn, partner_id)
    return [
        HistoryEntry(entry_id=row.id, occurred_at=row.occurred_at, entry_type=row.entry_type,
                     base_amount=row.base_amount, multiplier=row.multiplier, amount=row.amount,
                     balance_after=row.balance_after, description=row.description)
        for row in conn.execute(_select_history, {"partner_id": partner_id, "limit": limit})
    ]


def streak_calendar(conn: Connection, partner_id: int, month: date | str, *,
                    policy: Policy | None = None) -> list[CalendarDay]:
    """Each day of `month` (a date in it, or "YYYY-MM"): checked in or missed, milestones marked."""
    _partner(conn, partner_id)
    first_day = _month_start(month)
    last_day = first_day.replace(day=calendar.monthrange(first_day.year, first_day.month)[1])
    rows = conn.execute(_select_month, {"partner_id": partner_id, "first_day": first_day, "last_day": last_day})
    streaks = {row.day: row.streak for row in rows}
    period_days = (policy or settings_module.get().policy).streak_bonus_period_days
    return [_calendar_day(first_day + timedelta(days=offset), streaks, period_days)
            for offset in range(last_day.day)]


def _calendar_day(day: date, streaks: dict[date, int], period_days: int) -> CalendarDay:
    streak = streaks.get(day, 0)
    return CalendarDay(day=day, checked_in=day in streaks, streak=streak,
                       milestone=streak > 0 and streak % period_days == 0)


def _month_start(month: date | str) -> date:
    if isinstance(month, date):
        return month.replace(day=1)
    try:
        return datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month must look like 2026-03, got {month!r}") from None


def leaderboard(conn: Connection, kind: Literal["xp", "streak"] = "xp", limit: int = 10) -> list[LeaderboardRow]:
    """All-time XP or current streak, best first; ties go to who reached the score first, then id."""
    _check_limit(limit)
    if kind not in ("xp", "streak"):
        raise ValueError(f"leaderboard kind must be 'xp' or 'streak', got {kind!r}")
    statement = _xp_leaders if kind == "xp" else _streak_leaders
    rows = conn.execute(statement, {"limit": limit})
    return [LeaderboardRow(rank=rank, partner_id=row.id, score=row.score)
            for rank, row in enumerate(rows, start=1)]


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be from 1 to {MAX_ROWS}, got {limit}")
