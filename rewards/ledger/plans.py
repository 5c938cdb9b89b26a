"""PRO as a history: every plan change upstream made, by the instant it happened.

PRO at an instant is decided by the latest change at or before it, so a
check-in or claim is priced the same whether the change that covers it was
processed before or after it. `partner.pro_until` keeps the value of the
newest change (the plan in force now), which is also the answer for any
instant after that change: the common case needs no history at all.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, Row, bindparam, select, update

from rewards import rules
from rewards.db import insert_ignoring_conflicts
from rewards.models import plan_change

_insert_change = insert_ignoring_conflicts(plan_change, "partner_id", "occurred_at").returning(
    plan_change.c.occurred_at)
_select_change = select(plan_change.c.pro_until).where(
    plan_change.c.partner_id == bindparam("partner_id"), plan_change.c.occurred_at == bindparam("occurred_at"))
_select_changes = (
    select(plan_change.c.occurred_at, plan_change.c.pro_until)
    .where(plan_change.c.partner_id == bindparam("partner_id"))
    .order_by(plan_change.c.occurred_at)
)


@dataclass(frozen=True)
class PlanHistory:
    """A partner's plan changes, oldest first: (occurred_at, pro_until)."""

    changes: tuple[tuple[datetime, datetime | None], ...]

    def is_pro(self, at: datetime) -> bool:
        index = bisect_right([occurred_at for occurred_at, _ in self.changes], at) - 1
        return index >= 0 and rules.is_pro(self.changes[index][1], at)


def record(conn: Connection, partner_id: int, occurred_at: datetime, pro_until: datetime | None,
           now: datetime) -> str:
    """Add a change to the history: "new", "replay" (the same change again) or "superseded"
    (another change stamped that very instant holds, by `rules.holds_at_same_instant`)."""
    params = {"partner_id": partner_id, "occurred_at": occurred_at, "pro_until": pro_until, "created_at": now}
    if conn.execute(_insert_change, params).first() is not None:
        return "new"
    recorded = conn.execute(_select_change, params).scalar_one()
    if recorded == pro_until:
        return "replay"
    if not rules.holds_at_same_instant(pro_until, recorded):
        return "superseded"
    conn.execute(update(plan_change).where(
        plan_change.c.partner_id == partner_id, plan_change.c.occurred_at == occurred_at,
    ).values(pro_until=pro_until))
    return "new"


def history(conn: Connection, partner_id: int) -> PlanHistory:
    rows = conn.execute(_select_changes, {"partner_id": partner_id})
    return PlanHistory(tuple((row.occurred_at, row.pro_until) for row in rows))


def pro_at(conn: Connection, state: Row, at: datetime) -> bool:
    """Whether the locked partner `state` was PRO at `at`; reads the history only for an instant
    before the newest change."""
    if state.pro_until_set_at is None or state.pro_until_set_at <= at:
        return rules.is_pro(state.pro_until, at)
    return history(conn, state.id).is_pro(at)
