"""Streak state around the pure rule: freezes left, and whether a streak is still alive.

`rules.streak_continues` decides; this module only fetches what it needs.
The check-in path asks it about the day being checked in; streak expiry and
the at-risk notice ask it about the partner's local today ("would a check-in
today continue the streak?"), so the three can never disagree.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Engine, Row, bindparam, insert, select, tuple_

from rewards import rules
from rewards.maintenance import Summary
from rewards.models import checkin, partner, streak_freeze
from rewards.rules import StreakStep

_freeze_used = select(streak_freeze.c.partner_id).where(
    streak_freeze.c.partner_id == bindparam("partner_id"),
    streak_freeze.c.iso_week == bindparam("iso_week"),
)
_insert_freeze = insert(streak_freeze)
_streak_on_day = select(checkin.c.streak).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.day == bindparam("day")
)
_partners_with_a_streak = (
    select(partner.c.id, partner.c.timezone, partner.c.last_checkin_day,
           partner.c.checkin_streak, partner.c.pro_until)
    .where(partner.c.checkin_streak > 0,
           partner.c.last_checkin_day < bindparam("last_day_before"),
           partner.c.id > bindparam("after_id"))
    .order_by(partner.c.id)
    .limit(bindparam("limit"))
)


def freeze_available(conn: Connection, partner_id: int, missed_day: date) -> bool:
    """Whether the partner has not yet used the freeze of `missed_day`'s ISO week."""
    params = {"partner_id": partner_id, "iso_week": rules.iso_week(missed_day)}
    return conn.execute(_freeze_used, params).first() is None


def record_freeze(conn: Connection, partner_id: int, missed_day: date, checkin_day: date,
                  now: datetime) -> str:
    """Use the week's freeze; the primary key refuses a second one in the same week."""
    week = rules.iso_week(missed_day)
    conn.execute(_insert_freeze, {"partner_id": partner_id, "iso_week": week, "frozen_day": missed_day,
                                  "checkin_day": checkin_day, "created_at": now})
    return week


def next_streak(conn: Connection, state: Row, day: date, pro: bool) -> StreakStep:
    """The streak of a check-in on `day` by the locked partner `state`.

    When streak expiry has already set the streak to 0 but this check-in
    still continues it (a job for yesterday that arrived after midnight),
    the streak comes from the last check-in's row: rewards depend on
    occurred_at, never on whether expiry happened to run first.
    """
    last = state.last_checkin_day
    if not rules.streak_continues(last, day, pro, freeze_available=True)[0]:
        return rules.next_streak(state.checkin_streak, last, day, pro=pro, freeze_available=False)
    previous = state.checkin_streak
    if previous == 0:
        previous = conn.execute(_streak_on_day, {"partner_id": state.id, "day": last}).scalar_one()
    freeze = False
    if (day - last).days == 2:
        freeze = freeze_available(conn, state.id, rules.frozen_day(last))
    return rules.next_streak(previous, last, day, pro=pro, freeze_available=freeze)


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
