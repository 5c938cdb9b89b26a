"""The walk over live streaks that streak expiry and the at-risk notice share.

Both ask `rules.streak_continues` the question a check-in would ask, about
the partner's local today ("would a check-in today continue the streak?"),
so expiry, the notice and the check-in path can never disagree.

What one run costs follows the streaks that can be due, not the number of
live ones. A partner's local today depends on their time zone only, so the
walk goes zone by zone (the zones come from the index, one probe each) and
in each zone reads one range of `ix_partner_streak_zone_day`: the last
check-in days the job's window gives for that zone's local now (expiry: two
days ago or earlier; the notice: the two days before today, once the risk
hour has passed there). Partners who checked in recently are never read.
The exact decision, freeze included, is then `standings`', in Python.

The walk's order is (zone, last check-in day, id). A run that reaches its
batch limit has saved, with each batch, the last partner it examined as the
job's checkpoint; the next run starts just after that partner and goes
round to where it began, so every due streak is reached however many there
are, a run's worth at a time. A run that finishes its lap clears the
checkpoint. Lost streaks leave the index as they are reset (it holds live
streaks only); what stays in a window is alive until its day moves on (a
PRO partner whose one missed day a freeze bridges).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import BigInteger, Connection, Date, Engine, Row, bindparam, select, text, tuple_

from rewards import rules
from rewards.models import partner, streak_freeze
from schedules.runner import Summary, checkpoint, save_checkpoint

# (last check-in day, partner id) before and after every real one.
_START = (date.min, 0)
_END = (date.max, 2**63 - 1)

# One index probe per zone that has a live streak (a loose index scan).
_zones_with_a_streak = text("""
    WITH RECURSIVE zone(name) AS (
        SELECT MIN(timezone) FROM partner WHERE checkin_streak > 0
        UNION ALL
        SELECT (SELECT MIN(p.timezone) FROM partner p WHERE p.checkin_streak > 0 AND p.timezone > zone.name)
        FROM zone WHERE zone.name IS NOT NULL
    )
    SELECT name FROM zone WHERE name IS NOT NULL
""")

_key = tuple_(partner.c.last_checkin_day, partner.c.id)
_due_in_zone = (
    select(partner.c.id, partner.c.timezone, partner.c.last_checkin_day,
           partner.c.checkin_streak, partner.c.pro_until)
    .where(partner.c.checkin_streak > 0,
           partner.c.timezone == bindparam("zone"),
           partner.c.last_checkin_day.between(bindparam("first_day", type_=Date),
                                              bindparam("last_day", type_=Date)),
           _key > tuple_(bindparam("after_day", type_=Date), bindparam("after_id", type_=BigInteger)),
           _key <= tuple_(bindparam("upto_day", type_=Date), bindparam("upto_id", type_=BigInteger)))
    .order_by(partner.c.last_checkin_day, partner.c.id)
    .limit(bindparam("limit"))
)
_resume_at = select(partner.c.timezone, partner.c.last_checkin_day).where(partner.c.id == bindparam("id"))


@dataclass(frozen=True)
class Window:
    """The last check-in days (both ends included) that may make a zone's live streaks due now."""

    first_day: date
    last_day: date


# A zone's local now -> the window worth reading there, None when nothing can be due.
Windowing = Callable[[datetime], Window | None]


@dataclass(frozen=True)
class Standing:
    """A partner's streak as of their local today."""

    partner: Row
    local_now: datetime
    local_today: date
    alive: bool


@dataclass
class _Segment:
    """One zone's part of a run's lap, walked forward from `after` up to `upto`."""

    zone: str
    window: Window
    after: tuple[date, int] = _START
    upto: tuple[date, int] = _END

    def params(self, limit: int) -> dict:
        return {"zone": self.zone, "first_day": self.window.first_day, "last_day": self.window.last_day,
                "after_day": self.after[0], "after_id": self.after[1],
                "upto_day": self.upto[0], "upto_id": self.upto[1], "limit": limit}


def in_batches(engine: Engine, summary: Summary, *, job: str, now: datetime, window: Windowing,
               batch_size: int, max_batches: int,
               handle: Callable[[Connection, list[Standing]], int]) -> None:
    """Walk the live streaks in `window` of their zone's local now, one transaction per batch.

    `handle` gets each batch's standings and returns how many rows it changed.
    A run that reaches `max_batches` marks the summary `more`; the next run
    of `job` carries on after the last partner this one examined.
    """
    with engine.connect() as conn:
        segments, resumed = _lap(conn, job, now, window)
    while segments:
        if summary.batches >= max_batches:
            summary.more = True
            return
        with engine.begin() as conn:
            batch = _next_batch(conn, segments, batch_size)
            if not batch:
                break
            summary.batches += 1
            summary.examined += len(batch)
            summary.changed += handle(conn, standings(conn, batch, now))
            save_checkpoint(conn, job, batch[-1].id, now)
    if resumed or summary.batches:
        with engine.begin() as conn:
            save_checkpoint(conn, job, 0, now)


def _lap(conn: Connection, job: str, now: datetime, window: Windowing) -> tuple[list[_Segment], bool]:
    """The run's lap: from just after the checkpoint to the end of the order, then round to it.

    Also says whether there was a checkpoint to start from.
    """
    segments = []
    for zone in conn.execute(_zones_with_a_streak).scalars():
        zone_window = window(now.astimezone(ZoneInfo(zone)))
        if zone_window is not None:
            segments.append(_Segment(zone, zone_window))
    resume = _resume_position(conn, job)
    if resume is None:
        return segments, False
    zone, key = resume
    ahead = [s for s in segments if s.zone >= zone]
    behind = [s for s in segments if s.zone < zone]
    for segment in ahead:
        if segment.zone == zone:
            behind.append(_Segment(zone, segment.window, upto=key))
            segment.after = key
    return ahead + behind, True


def _resume_position(conn: Connection, job: str) -> tuple[str, tuple[date, int]] | None:
    """The walk's position just after the partner the last run stopped at, from that partner's row.

    Had the partner checked in or moved zone since, the position moves with
    them: the lap still goes round to it, so nothing is skipped.
    """
    partner_id = checkpoint(conn, job)
    row = conn.execute(_resume_at, {"id": partner_id}).one_or_none() if partner_id else None
    if row is None or row.last_checkin_day is None:
        return None
    return row.timezone, (row.last_checkin_day, partner_id)


def _next_batch(conn: Connection, segments: list[_Segment], batch_size: int) -> list[Row]:
    """Up to `batch_size` partners from the lap's next segments, dropping each one walked to its end."""
    batch: list[Row] = []
    while segments and len(batch) < batch_size:
        segment, room = segments[0], batch_size - len(batch)
        rows = conn.execute(_due_in_zone, segment.params(room)).fetchall()
        batch.extend(rows)
        if len(rows) < room:
            segments.pop(0)
        else:
            segment.after = (rows[-1].last_checkin_day, rows[-1].id)
    return batch


def standings(conn: Connection, partners: list[Row], now: datetime) -> list[Standing]:
    """Whether each partner's streak would survive a check-in in their local today."""
    local_nows = {row.id: now.astimezone(ZoneInfo(row.timezone)) for row in partners}
    needs_freeze = [
        (row.id, rules.iso_week(rules.frozen_day(row.last_checkin_day)))
        for row in partners
        if rules.is_pro(row.pro_until, now)
        and (local_nows[row.id].date() - row.last_checkin_day).days == 2
    ]
    used = _weeks_used(conn, needs_freeze)
    result = []
    for row in partners:
        local_today = local_nows[row.id].date()
        week = rules.iso_week(rules.frozen_day(row.last_checkin_day))
        continues, _ = rules.streak_continues(row.last_checkin_day, local_today,
                                              rules.is_pro(row.pro_until, now),
                                              freeze_available=(row.id, week) not in used)
        result.append(Standing(row, local_nows[row.id], local_today, continues))
    return result


def _weeks_used(conn: Connection, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    if not pairs:
        return set()
    rows = conn.execute(select(streak_freeze.c.partner_id, streak_freeze.c.iso_week).where(
        tuple_(streak_freeze.c.partner_id, streak_freeze.c.iso_week).in_(pairs)))
    return {(row.partner_id, row.iso_week) for row in rows}
