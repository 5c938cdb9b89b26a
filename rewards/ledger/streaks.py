"""Streak state around the pure rule: freezes left, and whether a streak is still alive.

`rules.streak_continues` decides; this module only fetches what it needs for
the check-in path. Streak expiry and the at-risk notice ask the same rule
about the partner's local today (schedules/live_streaks.py), so the three can
never disagree.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Connection, Row, bindparam, insert, select

from rewards import rules
from rewards.models import checkin, streak_freeze
from rewards.rules import StreakStep

_freeze_used = select(streak_freeze.c.partner_id).where(
    streak_freeze.c.partner_id == bindparam("partner_id"),
    streak_freeze.c.iso_week == bindparam("iso_week"),
)
_insert_freeze = insert(streak_freeze)
_streak_on_day = select(checkin.c.streak).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.day == bindparam("day")
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
