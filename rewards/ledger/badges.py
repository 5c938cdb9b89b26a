"""Streak badges: awarded once per partner per badge, in the check-in's transaction.

The (partner_id, badge) primary key decides: a check-in delivered twice, or
two paths reaching the same badge, insert one row and emit one event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import Connection, bindparam, delete, insert, select

from rewards import rules
from rewards.contract import keys
from rewards.db import insert_ignoring_conflicts
from rewards.ledger import outbox
from rewards.models import audit_event, partner_badge
from rewards.rules import PricedCheckin

_insert_badge = insert_ignoring_conflicts(partner_badge, "partner_id", "badge").returning(partner_badge.c.badge)
_delete_badges = delete(partner_badge).where(
    partner_badge.c.partner_id == bindparam("partner_id"),
    partner_badge.c.badge.in_(bindparam("badges", expanding=True)))
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


def award(conn: Connection, partner_id: int, badge: str, streak_days: int, checkin_day: date | None,
          now: datetime) -> bool:
    """Give the partner `badge` unless they hold it; True (and a badge.awarded event) when new."""
    inserted = conn.execute(_insert_badge, {
        "partner_id": partner_id, "badge": badge, "streak_days": streak_days,
        "checkin_day": checkin_day, "awarded_at": now,
    }).first()
    if inserted is None:
        return False
    outbox.emit(conn, outbox.BADGE_AWARDED, partner_id, {
        "badge": badge, "streak": streak_days, "day": checkin_day.isoformat() if checkin_day else None,
    }, key=keys.key(keys.BADGE_EVENT, partner_id=partner_id, badge=badge), now=now)
    return True


def sync(conn: Connection, partner_id: int, longest_streak_days: int, priced: list[PricedCheckin],
         now: datetime) -> None:
    """Hold exactly the badges the partner's longest streak reaches.

    Re-pricing after a late job can lengthen a streak (award the badge it now
    reaches) or, rarely, shorten one (a late day takes a week's freeze that a
    later gap had used): the badge is then withdrawn, with an audit row, so
    every order of the same jobs ends with the same badges. An event already
    delivered is not recalled.
    """
    held = {row.badge for row in badges_of(conn, partner_id)}
    reached = {badge: threshold for threshold, badge in rules.STREAK_BADGES if threshold <= longest_streak_days}
    for badge, threshold in reached.items():
        if badge not in held:
            day = next((day.day for day in priced if day.streak_days == threshold), None)
            award(conn, partner_id, badge, threshold, day, now)
    withdrawn = sorted(held - reached.keys())
    if withdrawn:
        conn.execute(_delete_badges, {"partner_id": partner_id, "badges": withdrawn})
        conn.execute(insert(audit_event), {
            "event_type": "badge.withdrawn", "partner_id": partner_id, "created_at": now,
            "payload": {"badges": withdrawn, "longest_streak": longest_streak_days}})


def badges_of(conn: Connection, partner_id: int) -> list[Badge]:
    """The badges a partner holds, smallest streak first (for profiles and the CLI)."""
    rows = conn.execute(_select_badges, {"partner_id": partner_id})
    return [Badge(row.badge, row.streak_days, row.checkin_day, row.awarded_at) for row in rows]
