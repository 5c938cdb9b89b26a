"""Analytics for operators: plain functions on a connection, as `rewards.queries` is.

    from rewards import analytics, db
    with db.get_read_engine().connect() as conn:
        found = analytics.report(conn, first_day, last_day)

Days are the check-in's day (the partner's local day, as the check-in table
keys it); XP per day uses the UTC day of a ledger row's occurred_at, and the
task funnel the attempts started in the window. Each query is one aggregate
over an index range (ix_checkin_day, ix_xp_ledger_occurred_at,
ix_partner_task_started_at_task_id_status, ix_partner_streak_board) except
the first check-in day of every partner, which reads the check-in primary
key once in partner order.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone

from sqlalchemy import Connection, Date, and_, bindparam, case, cast, func, select
from sqlalchemy.orm import aliased

from rewards import catalog as catalog_module
from rewards.catalog import Catalog
from rewards.models import (
    ENTRY_TYPES,
    checkin,
    partner,
    partner_task,
    utcnow,
    xp_ledger,
)

MAX_DAYS = 366
STREAK_BUCKETS: tuple[tuple[str, int, int | None], ...] = (
    ("1 day", 1, 1), ("2-6 days", 2, 6), ("7-13 days", 7, 13), ("14-29 days", 14, 29),
    ("30-99 days", 30, 99), ("100+ days", 100, None),
)
POPULAR_TASKS = 5


@dataclass(frozen=True)
class DailyCheckins:
    day: date
    checkins: int
    # Partners whose first check-in was on or before this day: the base the rate is a share of.
    active_base: int

    @property
    def rate(self) -> float | None:
        return self.checkins / self.active_base if self.active_base else None


@dataclass(frozen=True)
class StreakStats:
    partners: int  # every partner the engine knows
    with_streak: int  # of them, those with a live streak
    average_days: float | None  # over partners with a live streak
    median_days: float | None
    distribution: list[tuple[str, int]]


@dataclass(frozen=True)
class Retention:
    """Of partners whose first check-in fell in the window, who came back 1 and 7 days later."""

    new_partners: int
    d1_measurable: int  # first check-in at least a day before the window's end
    d1_returned: int
    d7_measurable: int
    d7_returned: int

    @property
    def d1_rate(self) -> float | None:
        return self.d1_returned / self.d1_measurable if self.d1_measurable else None

    @property
    def d7_rate(self) -> float | None:
        return self.d7_returned / self.d7_measurable if self.d7_measurable else None


@dataclass(frozen=True)
class TaskFunnel:
    task_id: str
    title: str
    started: int  # attempts started in the window
    completed: int
    expired: int
    in_progress: int

    @property
    def conversion(self) -> float | None:
        return self.completed / self.started if self.started else None


@dataclass(frozen=True)
class DailyXp:
    day: date
    by_type: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.by_type.values())


@dataclass(frozen=True)
class Segment:
    name: str  # "PRO" or "regular", as of the report's instant
    partners: int
    average_xp: float
    average_streak_days: float
    checkins: int  # in the window
    xp_issued: int  # in the window

    def checkin_rate(self, days: int) -> float | None:
        return self.checkins / (self.partners * days) if self.partners else None


@dataclass(frozen=True)
class Report:
    first_day: date
    last_day: date
    generated_at: datetime
    daily: list[DailyCheckins]
    streaks: StreakStats
    retention: Retention
    funnel: list[TaskFunnel]
    xp_daily: list[DailyXp]
    segments: list[Segment]

    @property
    def days(self) -> int:
        return (self.last_day - self.first_day).days + 1

    @property
    def popular(self) -> list[TaskFunnel]:
        """The most started tasks, then the most completed."""
        ranked = sorted(self.funnel, key=lambda task: (-task.started, -task.completed, task.task_id))
        return [task for task in ranked if task.started][:POPULAR_TASKS]


def window(days: int, last_day: date | None = None) -> tuple[date, date]:
    """The `days` days ending with `last_day` (default today, UTC)."""
    if not 1 <= days <= MAX_DAYS:
        raise ValueError(f"days must be from 1 to {MAX_DAYS}, got {days}")
    last_day = last_day or utcnow().date()
    return last_day - timedelta(days=days - 1), last_day


def report(conn: Connection, first_day: date, last_day: date, *, catalog: Catalog | None = None,
           now: datetime | None = None) -> Report:
    """Every figure of the report for the days first_day..last_day (inclusive)."""
    if last_day < first_day:
        raise ValueError(f"the window ends ({last_day}) before it starts ({first_day})")
    now = now or utcnow()
    firsts = first_checkin_days(conn)
    return Report(
        first_day=first_day, last_day=last_day, generated_at=now,
        daily=daily_checkins(conn, first_day, last_day, firsts),
        streaks=streak_stats(conn),
        retention=retention(conn, first_day, last_day),
        funnel=task_funnel(conn, first_day, last_day, catalog or catalog_module.get()),
        xp_daily=xp_per_day(conn, first_day, last_day),
        segments=segments(conn, first_day, last_day, now),
    )


# -- check-ins ---------------------------------------------------------------------

_first_day = func.min(checkin.c.day).label("first_day")
_firsts = select(checkin.c.partner_id, _first_day).group_by(checkin.c.partner_id).subquery()
_first_day_counts = select(_firsts.c.first_day, func.count()).group_by(_firsts.c.first_day)
_checkins_per_day = (
    select(checkin.c.day, func.count())
    .where(checkin.c.day.between(bindparam("first_day"), bindparam("last_day")))
    .group_by(checkin.c.day)
)


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])


def first_checkin_days(conn: Connection) -> dict[date, int]:
    """How many partners made their first check-in on each day."""
    return {_as_date(day): count for day, count in conn.execute(_first_day_counts)}


def daily_checkins(conn: Connection, first_day: date, last_day: date,
                   firsts: dict[date, int] | None = None) -> list[DailyCheckins]:
    """Check-ins per day, and the share of partners active so far that checked in that day."""
    firsts = first_checkin_days(conn) if firsts is None else firsts
    counts = {_as_date(day): count for day, count in conn.execute(
        _checkins_per_day, {"first_day": first_day, "last_day": last_day})}
    base = sum(count for day, count in firsts.items() if day < first_day)
    result = []
    for offset in range((last_day - first_day).days + 1):
        day = first_day + timedelta(days=offset)
        base += firsts.get(day, 0)
        result.append(DailyCheckins(day, counts.get(day, 0), base))
    return result


# -- streaks -----------------------------------------------------------------------

_streak_lengths = (
    select(partner.c.checkin_streak, func.count())
    .where(partner.c.checkin_streak > 0)
    .group_by(partner.c.checkin_streak)
)
_partner_count = select(func.count()).select_from(partner)


def streak_stats(conn: Connection) -> StreakStats:
    """Average and median current streak over partners with one, and how long streaks are."""
    lengths = sorted((days, count) for days, count in conn.execute(_streak_lengths))
    with_streak = sum(count for _, count in lengths)
    partners = conn.execute(_partner_count).scalar_one()
    distribution = [(label, sum(count for days, count in lengths
                                if days >= low and (high is None or days <= high)))
                    for label, low, high in STREAK_BUCKETS]
    if not with_streak:
        return StreakStats(partners, 0, None, None, distribution)
    average = sum(days * count for days, count in lengths) / with_streak
    return StreakStats(partners, with_streak, round(average, 2), _median(lengths, with_streak), distribution)


def _median(lengths: list[tuple[int, int]], total: int) -> float:
    """The median of a sorted (value, count) list of `total` values."""
    def value_at(position: int) -> int:
        seen = 0
        for days, count in lengths:
            seen += count
            if position < seen:
                return days
        raise AssertionError("position beyond the counted values")

    middle = total // 2
    if total % 2:
        return float(value_at(middle))
    return (value_at(middle - 1) + value_at(middle)) / 2


# -- retention ---------------------------------------------------------------------

def _plus_days(column, days: int, dialect: str):
    """`column` + days as a date, in the dialect's own date arithmetic."""
    if dialect == "sqlite":
        return func.date(column, f"+{days} day")
    return column + days


def _retention_statement(dialect: str):
    d1, d7 = aliased(checkin, name="d1"), aliased(checkin, name="d7")
    return (
        select(_firsts.c.first_day, func.count(), func.count(d1.c.day), func.count(d7.c.day))
        .select_from(_firsts)
        .outerjoin(d1, and_(d1.c.partner_id == _firsts.c.partner_id,
                            d1.c.day == _plus_days(_firsts.c.first_day, 1, dialect)))
        .outerjoin(d7, and_(d7.c.partner_id == _firsts.c.partner_id,
                            d7.c.day == _plus_days(_firsts.c.first_day, 7, dialect)))
        .where(_firsts.c.first_day.between(bindparam("first_day"), bindparam("last_day")))
        .group_by(_firsts.c.first_day)
    )


_RETENTION = {dialect: _retention_statement(dialect) for dialect in ("postgresql", "sqlite")}


def retention(conn: Connection, first_day: date, last_day: date) -> Retention:
    """D1 and D7 return: checked in again exactly 1 (7) days after their first check-in.

    A cohort counts only once its day 1 (day 7) has passed inside the window.
    """
    rows = conn.execute(_RETENTION[conn.dialect.name], {"first_day": first_day, "last_day": last_day})
    new = d1_measurable = d1_returned = d7_measurable = d7_returned = 0
    for first, cohort, back_d1, back_d7 in rows:
        first = _as_date(first)
        new += cohort
        if first + timedelta(days=1) <= last_day:
            d1_measurable += cohort
            d1_returned += back_d1
        if first + timedelta(days=7) <= last_day:
            d7_measurable += cohort
            d7_returned += back_d7
    return Retention(new, d1_measurable, d1_returned, d7_measurable, d7_returned)


# -- tasks -------------------------------------------------------------------------

_attempts_by_status = (
    select(partner_task.c.task_id, partner_task.c.status, func.count())
    .where(partner_task.c.started_at >= bindparam("start"), partner_task.c.started_at < bindparam("end"))
    .group_by(partner_task.c.task_id, partner_task.c.status)
)


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(0), timezone.utc)


def task_funnel(conn: Connection, first_day: date, last_day: date, catalog: Catalog) -> list[TaskFunnel]:
    """Per catalogue task: attempts started in the window and where they ended (completed / expired / open)."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for task_id, status, count in conn.execute(_attempts_by_status, {
            "start": _day_start(first_day), "end": _day_start(last_day + timedelta(days=1))}):
        counts[task_id][status] = count
    task_ids = list(catalog.tasks) + sorted(set(counts) - set(catalog.tasks))
    result = []
    for task_id in task_ids:
        by_status = counts.get(task_id, {})
        title = catalog.tasks[task_id].title if task_id in catalog.tasks else task_id
        result.append(TaskFunnel(task_id, title, started=sum(by_status.values()),
                                 completed=by_status.get("COMPLETED", 0), expired=by_status.get("EXPIRED", 0),
                                 in_progress=by_status.get("STARTED", 0)))
    return result


# -- XP issued ---------------------------------------------------------------------

def _utc_day(column, dialect: str):
    """The UTC calendar day of an instant column."""
    if dialect == "sqlite":
        return func.date(column)  # stored as UTC text
    return cast(func.timezone("UTC", column), Date)


def _xp_per_day_statement(dialect: str):
    day = _utc_day(xp_ledger.c.occurred_at, dialect).label("day")
    return (
        select(day, xp_ledger.c.entry_type, func.sum(xp_ledger.c.amount))
        .where(xp_ledger.c.occurred_at >= bindparam("start"), xp_ledger.c.occurred_at < bindparam("end"))
        .group_by(day, xp_ledger.c.entry_type)
    )


_XP_PER_DAY = {dialect: _xp_per_day_statement(dialect) for dialect in ("postgresql", "sqlite")}


def xp_per_day(conn: Connection, first_day: date, last_day: date) -> list[DailyXp]:
    """XP issued per UTC day, split by ledger entry type (deductions count negative)."""
    totals: dict[date, dict[str, int]] = defaultdict(dict)
    for day, entry_type, amount in conn.execute(_XP_PER_DAY[conn.dialect.name], {
            "start": _day_start(first_day), "end": _day_start(last_day + timedelta(days=1))}):
        totals[_as_date(day)][entry_type] = int(amount)
    return [DailyXp(day, {entry_type: totals[day].get(entry_type, 0) for entry_type in ENTRY_TYPES})
            for day in (first_day + timedelta(days=offset) for offset in range((last_day - first_day).days + 1))]


# -- PRO vs regular ----------------------------------------------------------------

_segment = case((partner.c.pro_until > bindparam("now"), "PRO"), else_="regular").label("segment")
_segment_partners = select(_segment, func.count(), func.avg(partner.c.xp),
                           func.avg(partner.c.checkin_streak)).group_by(_segment)
_segment_checkins = (
    select(_segment, func.count())
    .select_from(checkin.join(partner, partner.c.id == checkin.c.partner_id))
    .where(checkin.c.day.between(bindparam("first_day"), bindparam("last_day")))
    .group_by(_segment)
)
_segment_xp = (
    select(_segment, func.sum(xp_ledger.c.amount))
    .select_from(xp_ledger.join(partner, partner.c.id == xp_ledger.c.partner_id))
    .where(xp_ledger.c.occurred_at >= bindparam("start"), xp_ledger.c.occurred_at < bindparam("end"))
    .group_by(_segment)
)


def segments(conn: Connection, first_day: date, last_day: date, now: datetime) -> list[Segment]:
    """PRO and regular partners side by side; PRO as of `now`, not as of each day."""
    params = {"now": now, "first_day": first_day, "last_day": last_day,
              "start": _day_start(first_day), "end": _day_start(last_day + timedelta(days=1))}
    partners = {name: (count, avg_xp, avg_streak)
                for name, count, avg_xp, avg_streak in conn.execute(_segment_partners, params)}
    checkins = dict(conn.execute(_segment_checkins, params).fetchall())
    issued = dict(conn.execute(_segment_xp, params).fetchall())
    result = []
    for name in ("PRO", "regular"):
        count, avg_xp, avg_streak = partners.get(name, (0, 0, 0))
        result.append(Segment(name, count, round(float(avg_xp or 0), 1), round(float(avg_streak or 0), 2),
                              checkins.get(name, 0), int(issued.get(name) or 0)))
    return result
