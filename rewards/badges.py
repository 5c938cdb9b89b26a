"""Streak badges: awarded once per partner per badge, in the check-in's transaction.

The (partner_id, badge) primary key decides: a check-in delivered twice, or
two paths reaching the same badge, insert one row and emit one event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, bindparam, select

from rewards import outbox
from rewards.db import insert_ignoring_conflicts
from rewards.models import partner_badge

_insert_badge = insert_ignoring_conflicts(partner_badge, "partner_id", "badge").returning(partner_badge.c.badge)
_select_badges = (
    select(partner_badge.c.badge, partner_badge.c.streak_days, partner_badge.c.checkin_day,
           partner_badge.c.awarded_at)
    .where(partner_badge.c.partner_id == bindparam("partner_id"))
    .order_by(partner_badge.c.streak_days, partner_badge.c.badge)
)


@dataclass(frozen=True)
class Badge:
    badge: str
    streak_days: int
    checkin_day: date | None
    awarded_at: datetime


def award(conn: Connection, partner_id: int, badge: str, streak_days: int, checkin_day: date,
          now: datetime) -> bool:
    """Give the partner `badge` unless they hold it; True (and a badge.awarded event) when new."""
    inserted = conn.execute(_insert_badge, {
        "partner_id": partner_id, "badge": badge, "streak_days": streak_days,
        "checkin_day": checkin_day, "awarded_at": now,
    }).first()
    if inserted is None:
        return False
    outbox.emit(conn, outbox.BADGE_AWARDED, partner_id, {
        "badge": badge, "streak": streak_days, "day": checkin_day.isoformat(),
    }, key=f"badge:{partner_id}:{badge}", now=now)
    return True


def badges_of(conn: Connection, partner_id: int) -> list[Badge]:
    """The badges a partner holds, smallest streak first (for profiles and the CLI)."""
    rows = conn.execute(_select_badges, {"partner_id": partner_id})
    return [Badge(row.badge, row.streak_days, row.checkin_day, row.awarded_at) for row in rows]
