"""The walk over live streaks that streak expiry and the at-risk notice share.

Both ask `rules.streak_continues` the question a check-in would ask, about
the partner's local today ("would a check-in today continue the streak?"),
so expiry, the notice and the check-in path can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, bindparam, select, tuple_

from rewards import rules
from rewards.models import partner, streak_freeze
from schedules.runner import Summary

_partners_with_a_streak = (
    select(partner.c.id, partner.c.timezone, partner.c.last_checkin_day,
           partner.c.checkin_streak, partner.c.pro_until)
    .where(partner.c.checkin_streak > 0,
           partner.c.last_checkin_day < bindparam("last_day_before"),
           partner.c.id > bindparam("after_id"))
    .order_by(partner.c.id)
    .limit(bindparam("limit"))
)


@dataclass(frozen=True)
class Standing:
    """A partner's streak as of their local today."""

    partner: Row
    local_now: datetime
    local_today: date
    alive: bool


def partners_with_a_streak(conn: Connection, *, last_day_before: date, after_id: int,
                           limit: int) -> list[Row]:
    """Partners whose streak is above 0 and whose last check-in is before a day, by id."""
    return conn.execute(_partners_with_a_streak, {
        "last_day_before": last_day_before, "after_id": after_id, "limit": limit,
    }).fetchall()


def in_batches(engine: Engine, summary: Summary, *, now: datetime, last_day_before: date,
               batch_size: int, max_batches: int,
               handle: Callable[[Connection, list[Standing]], int]) -> None:
    """Walk partners with a live streak by id, one transaction per batch.

    `handle` gets each batch's standings and returns how many rows it changed;
    a run that reaches `max_batches` marks the summary `more` for the next run.
    """
    after_id = 0
    while summary.batches < max_batches:
        with engine.begin() as conn:
            batch = partners_with_a_streak(conn, last_day_before=last_day_before,
                                           after_id=after_id, limit=batch_size)
            if not batch:
                return
            summary.batches += 1
            summary.examined += len(batch)
            summary.changed += handle(conn, standings(conn, batch, now))
        after_id = batch[-1].id
    summary.more = True


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
