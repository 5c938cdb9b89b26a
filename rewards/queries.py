"""The read side: what upstream apps and operators ask about a partner, and the leaderboards.

Plain functions taking a SQLAlchemy Connection and returning frozen
dataclasses, importable by any upstream app:

    from rewards import db, queries
    with db.get_read_engine().connect() as conn:
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

from sqlalchemy import Connection, Row, bindparam, select, text

from rewards import catalog as catalog_module
from rewards import leaderboards, rules
from rewards import settings as settings_module
from rewards.catalog import Catalog, CatalogTask
from rewards.ledger import badges as badges_module
from rewards.ledger import quests, streaks
from rewards.ledger.badges import Badge
from rewards.models import (
    checkin,
    partner,
    partner_task,
    referral,
    streak_freeze,
    utcnow,
    xp_ledger,
)
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
    select(checkin.c.day, checkin.c.streak, checkin.c.bonus_xp, checkin.c.xp_granted)
    .where(checkin.c.partner_id == bindparam("partner_id"),
           checkin.c.day.between(bindparam("first_day"), bindparam("last_day")))
)
_select_frozen_days = (
    select(streak_freeze.c.frozen_day)
    .where(streak_freeze.c.partner_id == bindparam("partner_id"),
           streak_freeze.c.frozen_day.between(bindparam("first_day"), bindparam("last_day")))
)


# A job's ledger rows: the row its key names and, for a check-in, its streak
# bonus (`checkin:42:2026-03-02:bonus`); equality, so the unique index answers.
_select_key_rows = (
    select(xp_ledger.c.partner_id, xp_ledger.c.entry_type, xp_ledger.c.amount,
           xp_ledger.c.balance_after, xp_ledger.c.occurred_at)
    .where(xp_ledger.c.idempotency_key.in_(bindparam("keys", expanding=True)))
    .order_by(xp_ledger.c.id)
)
_select_referral = select(referral).where(referral.c.referee_id == bindparam("referee_id"))
_select_attempt = select(partner_task).where(
    partner_task.c.partner_id == bindparam("partner_id"), partner_task.c.task_id == bindparam("task_id"),
    partner_task.c.attempt == bindparam("attempt"))


@dataclass(frozen=True)
class JobOutcome:
    """What PostgreSQL holds for an idempotency key: the outcome of the job that applied it."""

    key: str
    status: str
    partner_id: int
    details: dict


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
    badges: tuple[Badge, ...] = ()


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


CHECKED_IN, BONUS, FROZEN, MISSED, UPCOMING = "checked_in", "bonus", "frozen", "missed", "upcoming"


@dataclass(frozen=True)
class CalendarDay:
    day: date
    checked_in: bool
    streak: int  # the streak that day's check-in made; 0 when missed
    milestone: bool  # a streak bonus day: the streak is a multiple of the bonus period
    # One of: bonus (a check-in that paid the streak bonus), checked_in, frozen
    # (missed, but a PRO freeze bridged it), missed, upcoming (the partner's
    # local today without a check-in yet, and the days after it).
    status: str = MISSED
    xp_granted: int = 0


@dataclass(frozen=True)
class CheckinPreview:
    """What a check-in at `at` would pay, priced as the check-in job prices it."""

    partner_id: int
    day: date  # the partner's local day at `at`
    already_checked_in: bool  # a check-in now would be a duplicate and pay nothing
    streak_days: int  # the streak it would reach
    frozen_days: int  # missed days a PRO freeze would bridge to get there
    base_xp: int
    bonus_xp: int
    multiplier: int
    xp_granted: int


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
        badges=tuple(badges_module.badges_of(conn, partner_id)),
    )


def checkin_preview(conn: Connection, partner_id: int, *, policy: Policy | None = None,
                    at: datetime | None = None) -> CheckinPreview:
    """What a check-in at `at` (default now) would pay: the streak it reaches, bonus, multiplier, XP.

    The same functions as the check-in job decide (`streaks.next_streak`,
    `rules.checkin_reward`), on the partner row as committed; a partner the
    engine has not seen yet would start a streak of 1.
    """
    policy = policy or settings_module.get().policy
    at = at or utcnow()
    state = conn.execute(_select_partner, {"partner_id": partner_id}).first()
    timezone = state.timezone if state is not None else "UTC"
    day = rules.local_day(at, timezone)
    if state is not None and state.last_checkin_day is not None and day <= state.last_checkin_day:
        return CheckinPreview(partner_id, day, True, state.checkin_streak, 0, 0, 0, 1, 0)
    pro = state is not None and rules.is_pro(state.pro_until, at)
    step = streaks.next_streak(conn, state, day, pro) if state is not None else rules.StreakStep(1, 0)
    reward = rules.checkin_reward(step.streak_days, pro, policy)
    return CheckinPreview(partner_id, day, False, step.streak_days, step.frozen_days, reward.base_xp,
                          reward.bonus_xp, reward.multiplier, reward.xp_granted)


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
    if status == quests.COMPLETED:
        progress = Progress(task.requirement, task.requirement)
    elif status == quests.STARTED:
        progress = quests.measure_progress(conn, task, state, attempt.initial_metric_value,
                                                 attempt.start_day)
    else:  # what starting it now would snapshot and count
        progress = quests.measure_progress(conn, task, state,
                                                 quests.initial_metric_value(task, state),
                                                 rules.local_day(at, state.timezone))
    xp_on_claim = quests.price(task, rules.is_pro(state.pro_until, at), policy).xp_granted
    return TaskView(
        task_id=task.task_id, title=task.title, type=task.type, status=status,
        attempt=attempt.attempt if attempt is not None else None, progress=progress,
        claimable=status == quests.STARTED and progress.met,
        xp_on_claim=0 if status == quests.COMPLETED else xp_on_claim, reward_xp=task.reward_xp,
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
                    policy: Policy | None = None, at: datetime | None = None) -> list[CalendarDay]:
    """Each day of `month` (a date in it, or "YYYY-MM"): bonus, checked in, frozen, missed or upcoming.

    The partner's local today (at `at`, default now), until they check in, and
    the days after it are upcoming, not missed.
    """
    state = _partner(conn, partner_id)
    first_day = _month_start(month)
    last_day = first_day.replace(day=calendar.monthrange(first_day.year, first_day.month)[1])
    params = {"partner_id": partner_id, "first_day": first_day, "last_day": last_day}
    checkins = {row.day: row for row in conn.execute(_select_month, params)}
    frozen = set(conn.execute(_select_frozen_days, params).scalars())
    today = rules.local_day(at or utcnow(), state.timezone)
    period_days = (policy or settings_module.get().policy).streak_bonus_period_days
    return [_calendar_day(first_day + timedelta(days=offset), checkins, frozen, today, period_days)
            for offset in range(last_day.day)]


def _calendar_day(day: date, checkins: dict[date, Row], frozen: set[date], today: date,
                  period_days: int) -> CalendarDay:
    row = checkins.get(day)
    if row is None:
        status = FROZEN if day in frozen else UPCOMING if day >= today else MISSED
        return CalendarDay(day=day, checked_in=False, streak=0, milestone=False, status=status)
    return CalendarDay(day=day, checked_in=True, streak=row.streak,
                       milestone=row.streak % period_days == 0,
                       status=BONUS if row.bonus_xp else CHECKED_IN, xp_granted=row.xp_granted)


def _month_start(month: date | str) -> date:
    if isinstance(month, date):
        return month.replace(day=1)
    try:
        return datetime.strptime(month, "%Y-%m").date()
    except ValueError:
        raise ValueError(f"month must look like 2026-03, got {month!r}") from None


def leaderboard(conn: Connection, kind: Literal["xp", "weekly", "streak"] = "xp", limit: int = 10, *,
                at: datetime | None = None) -> list[LeaderboardRow]:
    """A leaderboard's top from SQL, best first, in the order `rewards.leaderboards` defines.

    `rewards.leaderboards.top` reads the same board from Redis when it is
    configured; this one always asks PostgreSQL (or SQLite).
    """
    _check_limit(limit)
    board = leaderboards.board(kind, at or utcnow())
    return [LeaderboardRow(rank=entry.rank, partner_id=entry.partner_id, score=entry.score)
            for entry in leaderboards.sql_top(conn, board, limit)]


@dataclass(frozen=True)
class Freshness:
    """How current a read is.

    From the primary, a read sees every commit. From a standby
    (`REWARDS_READ_DATABASE_URL` with `target_session_attrs=prefer-standby`),
    it sees every commit the standby had replayed: those up to `as_of` at
    least (the newest replayed commit's time; None before the standby has
    replayed any since it started). Asynchronous standbys may be further
    behind than synchronous ones; either may have replayed less than the
    primary acknowledged.
    """

    from_standby: bool
    as_of: datetime | None = None


_REPLAY = text("SELECT pg_is_in_recovery(), pg_last_xact_replay_timestamp()")


def freshness(conn: Connection) -> Freshness:
    """Where `conn` reads from and, on a standby, up to which commit (call it before the reads it qualifies)."""
    if conn.dialect.name != "postgresql":
        return Freshness(from_standby=False)
    in_recovery, replayed_at = conn.execute(_REPLAY).one()
    return Freshness(from_standby=in_recovery, as_of=replayed_at if in_recovery else None)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_ROWS:
        raise ValueError(f"limit must be from 1 to {MAX_ROWS}, got {limit}")


def outcome(conn: Connection, key: str) -> JobOutcome | None:
    """The applied outcome for an idempotency key (the `key` of a job's result), or None.

    The result backend keeps results for a day and may have missed one; this
    reads the source of truth. None means no job with this key has been
    applied (yet): it is queued, retrying, rejected or never sent.
    """
    rows = conn.execute(_select_key_rows, {"keys": [key, key + ":bonus"]}).all()
    if rows:
        return JobOutcome(key, "applied", rows[0].partner_id, {
            "xp_granted": sum(row.amount for row in rows),
            "entries": [f"{row.entry_type} {row.amount:+d}" for row in rows],
            "xp_after": rows[-1].balance_after,
            "occurred_at": rows[0].occurred_at.isoformat(),
        })
    kind, _, rest = key.partition(":")
    if kind == "referral" and rest.isdigit():
        found = conn.execute(_select_referral, {"referee_id": int(rest)}).first()
        if found:
            return JobOutcome(key, "applied", found.referrer_id, {
                "referee_id": found.referee_id, "occurred_at": found.occurred_at.isoformat()})
    if kind == "task":
        return _task_outcome(conn, key, rest)
    return None


def _task_outcome(conn: Connection, key: str, rest: str) -> JobOutcome | None:
    """A task attempt that was started (its claim, once applied, has a ledger row instead)."""
    partner_text, _, remainder = rest.partition(":")
    task_id, _, attempt_text = remainder.rpartition(":")
    if not (partner_text.isdigit() and attempt_text.isdigit() and task_id):
        return None
    found = conn.execute(_select_attempt, {"partner_id": int(partner_text), "task_id": task_id,
                                           "attempt": int(attempt_text)}).first()
    if found is None:
        return None
    return JobOutcome(key, "applied", found.partner_id, {
        "task_id": found.task_id, "attempt": found.attempt, "task_status": found.status,
        "started_at": found.started_at.isoformat()})
