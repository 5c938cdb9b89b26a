"""Building partners' streak histories through the real worker, and reading what they emitted."""

from __future__ import annotations

from datetime import date, datetime, time, timezone
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, text

from rewards import contract
from tests.support.jobs import run

PRO_FOREVER = "2030-01-01T00:00:00+00:00"
SETUP_AT = "2025-12-01T00:00:00+00:00"


def noon(day: date, zone: str = "UTC") -> str:
    """Midday of a local calendar day, as the instant a check-in job carries."""
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(zone)).astimezone(timezone.utc).isoformat()


def checkin(client, partner_id: int, day: date, zone: str = "UTC") -> dict[str, Any]:
    return run(client, contract.CHECKIN, partner_id=partner_id, occurred_at=noon(day, zone))


def set_partner(client, partner_id: int, *, pro: bool = False, zone: str | None = None) -> None:
    options: dict[str, Any] = {}
    if pro:
        options["pro_until"] = PRO_FOREVER
    if zone:
        options["timezone"] = zone
    result = run(client, contract.PARTNER_UPDATE, partner_id=partner_id, occurred_at=SETUP_AT, **options)
    assert result["status"] == "applied", result


def events(conn: Connection, event_type: str, partner_id: int | None = None) -> list[Any]:
    """Outbox rows of one type (and partner), oldest first."""
    query = "SELECT * FROM outbox WHERE event_type = :type"
    if partner_id is not None:
        query += " AND partner_id = :partner_id"
    return conn.execute(text(query + " ORDER BY id"), {"type": event_type, "partner_id": partner_id}).fetchall()
