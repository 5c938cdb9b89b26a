"""The outbox: events for upstream, written in the transaction of the change they report.

A job that awards a badge, loses a streak or finds a mismatch calls `emit`
with its own connection, so the event exists if and only if the change
committed. The relay (`schedules/relay_outbox.py`) delivers committed events
at least once, each with the stable `event_id` stored here, and marks them
delivered; consumers de-duplicate on that id.

Event types (payloads are JSON objects; `partner_id` is also on the row):

    checkin.milestone        a streak reached a whole number of bonus periods (7, 14 …)
    badge.awarded            a streak badge, once per partner per badge
    streak.freeze_used       a PRO freeze bridged a missed day
    streak.lost              streak expiry reset a streak to 0
    streak.at_risk           no check-in yet today, late in the partner's day
    reconciliation.mismatch  the reconciler found a broken invariant
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, delete, select, update

from rewards.db import insert_ignoring_conflicts
from rewards.models import outbox

CHECKIN_MILESTONE = "checkin.milestone"
BADGE_AWARDED = "badge.awarded"
STREAK_FREEZE_USED = "streak.freeze_used"
STREAK_LOST = "streak.lost"
STREAK_AT_RISK = "streak.at_risk"
RECONCILIATION_MISMATCH = "reconciliation.mismatch"
TASK_COMPLETED = "task.completed"
TASK_EXPIRED = "task.expired"

_insert_events = insert_ignoring_conflicts(outbox, "idempotency_key").returning(outbox.c.event_id)


@dataclass(frozen=True)
class Event:
    event_type: str
    partner_id: int | None
    payload: dict[str, Any] = field(default_factory=dict)
    # Set when the fact must be reported once however often the job runs.
    key: str | None = None


def emit(conn: Connection, event_type: str, partner_id: int | None, payload: dict[str, Any],
         key: str | None = None, *, now: datetime) -> uuid.UUID | None:
    """Write one event in the caller's transaction; returns its event id, None if `key` was taken."""
    emitted = emit_many(conn, [Event(event_type, partner_id, payload, key)], now=now)
    return emitted[0] if emitted else None


def emit_many(conn: Connection, events: list[Event], *, now: datetime) -> list[uuid.UUID]:
    """Write events in the caller's transaction; returns the ids of those whose key was new."""
    if not events:
        return []
    rows = [{
        "event_id": uuid.uuid4(), "event_type": event.event_type, "partner_id": event.partner_id,
        "payload": event.payload, "idempotency_key": event.key, "created_at": now,
        "attempts": 0, "next_attempt_at": now,
    } for event in events]
    return list(conn.execute(_insert_events.values(rows)).scalars())


@dataclass(frozen=True)
class Message:
    """An event as the relay hands it to a sink."""

    event_id: str
    event_type: str
    partner_id: int | None
    payload: dict[str, Any]
    created_at: datetime
    attempts: int

    def body(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "partner_id": self.partner_id,
            "created_at": self.created_at.isoformat(),
            "payload": self.payload,
        }


_due = (
    select(outbox.c.id, outbox.c.event_id, outbox.c.event_type, outbox.c.partner_id,
           outbox.c.payload, outbox.c.created_at, outbox.c.attempts)
    .where(outbox.c.delivered_at.is_(None), outbox.c.next_attempt_at <= bindparam("now"))
    .order_by(outbox.c.next_attempt_at, outbox.c.id)
    .limit(bindparam("limit"))
    # Two relays never hold the same rows: each skips what the other locked.
    .with_for_update(skip_locked=True)
)


def claim(conn: Connection, *, now: datetime, limit: int, lease_s: float) -> list[Message]:
    """Take up to `limit` due events for delivery and lease them for `lease_s`.

    The lease (next_attempt_at pushed ahead) is what keeps the claim after
    this short transaction commits; a relay that dies mid-batch leaves its
    events to come back when the lease runs out, so none is lost.
    """
    rows = conn.execute(_due, {"now": now, "limit": limit}).fetchall()
    if rows:
        conn.execute(update(outbox).where(outbox.c.id.in_([row.id for row in rows]))
                     .values(next_attempt_at=now + timedelta(seconds=lease_s)))
    return [_message(row) for row in rows]


def _message(row: Row) -> Message:
    return Message(str(row.event_id), row.event_type, row.partner_id, row.payload,
                   row.created_at, row.attempts)


def mark_delivered(conn: Connection, event_ids: list[str], *, now: datetime) -> None:
    if event_ids:
        conn.execute(update(outbox).where(outbox.c.event_id.in_([uuid.UUID(e) for e in event_ids]))
                     .values(delivered_at=now, attempts=outbox.c.attempts + 1, last_error=None))


def mark_failed(conn: Connection, event_id: str, error: str, *, retry_at: datetime) -> None:
    conn.execute(update(outbox).where(outbox.c.event_id == uuid.UUID(event_id))
                 .values(attempts=outbox.c.attempts + 1, next_attempt_at=retry_at,
                         last_error=error[:2_000]))


def release(conn: Connection, event_ids: list[str], *, retry_at: datetime) -> None:
    """Hand back claimed events that were not attempted, due again at `retry_at`."""
    if event_ids:
        conn.execute(update(outbox).where(outbox.c.event_id.in_([uuid.UUID(e) for e in event_ids]))
                     .values(next_attempt_at=retry_at))


def prune_delivered(conn: Connection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` events delivered before `before`; returns how many."""
    oldest = (select(outbox.c.id).where(outbox.c.delivered_at < before)
              .order_by(outbox.c.delivered_at).limit(limit))
    return conn.execute(delete(outbox).where(outbox.c.id.in_(oldest.scalar_subquery()))).rowcount


def retry_delay_s(attempts: int, *, base_s: float = 1.0, cap_s: float) -> float:
    """Seconds before trying an event again after `attempts` failed tries: doubling, capped."""
    return min(cap_s, base_s * 2 ** max(0, attempts - 1))
