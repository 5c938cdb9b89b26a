"""The write primitives every job is built from: lock a partner, move XP, audit.

Every balance change is one `UPDATE partner SET xp = xp + :n … RETURNING xp`
followed by the ledger rows that explain it, in the job's transaction, with
the partner row locked for the whole of it. Statements are built once at
import; a job only binds parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from rewards.db import insert_ignoring_conflicts
from rewards.models import audit_event, partner, xp_ledger

_select_partner_for_update = (
    select(partner).where(partner.c.id == bindparam("partner_id")).with_for_update()
)
_create_partner = insert_ignoring_conflicts(partner, "id").values(
    id=bindparam("partner_id"), created_at=bindparam("now"), updated_at=bindparam("now")
)
_credit = (
    update(partner)
    .where(partner.c.id == bindparam("partner_id"))
    .values(xp=partner.c.xp + bindparam("xp_delta"), updated_at=bindparam("now"))
    .returning(partner.c.xp)
)
_insert_ledger_rows = insert(xp_ledger)
_insert_audit_event = insert(audit_event)


@dataclass(frozen=True)
class Entry:
    """One XP movement, before it has a place in the partner's balance chain."""

    entry_type: str
    base_amount: int
    multiplier: int
    idempotency_key: str
    description: str

    @property
    def amount(self) -> int:
        return self.base_amount * self.multiplier


def lock_partner(conn: Connection, partner_id: int, now: datetime) -> Row:
    """The partner's row, locked until the transaction ends; created on first sight.

    The lock makes a partner's jobs take turns, so streak state and balance
    always move together. Creation races are settled by the primary key.
    """
    params = {"partner_id": partner_id, "now": now}
    row = conn.execute(_select_partner_for_update, params).one_or_none()
    if row is None:
        conn.execute(_create_partner, params)
        row = conn.execute(_select_partner_for_update, params).one()
    return row


def credit(conn: Connection, partner_id: int, entries: list[Entry], *, occurred_at: datetime,
           rule_version: str, now: datetime) -> int:
    """Move the entries' total onto the balance and write their ledger rows; returns xp after."""
    total = sum(entry.amount for entry in entries)
    xp_after = conn.execute(
        _credit, {"partner_id": partner_id, "xp_delta": total, "now": now}
    ).scalar_one()
    write_ledger_rows(conn, partner_id, entries, xp_after=xp_after,
                      occurred_at=occurred_at, rule_version=rule_version, now=now)
    return xp_after


def write_ledger_rows(conn: Connection, partner_id: int, entries: list[Entry], *, xp_after: int,
                      occurred_at: datetime, rule_version: str, now: datetime) -> None:
    """Ledger rows for entries already added to the balance, chained to end at `xp_after`."""
    balance = xp_after - sum(entry.amount for entry in entries)
    rows = []
    for entry in entries:
        balance += entry.amount
        rows.append({
            "partner_id": partner_id,
            "entry_type": entry.entry_type,
            "base_amount": entry.base_amount,
            "multiplier": entry.multiplier,
            "amount": entry.amount,
            "balance_after": balance,
            "idempotency_key": entry.idempotency_key,
            "rule_version": rule_version,
            "description": entry.description,
            "occurred_at": occurred_at,
            "created_at": now,
        })
    conn.execute(_insert_ledger_rows, rows)


def audit(conn: Connection, event_type: str, partner_id: int | None, payload: dict[str, Any],
          now: datetime) -> None:
    conn.execute(_insert_audit_event, {
        "event_type": event_type, "partner_id": partner_id, "payload": payload, "created_at": now,
    })
