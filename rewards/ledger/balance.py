"""The write primitives every job is built from: lock a partner, move XP, audit.

Every balance change is `credit`: one `UPDATE partner SET xp = xp + :n …
RETURNING xp` followed by the ledger rows that explain it, in the job's
transaction, with the partner row locked for the whole of it. Statements are
built once; a job only binds parameters.

On PostgreSQL, in-order check-ins take `credit_checkins` instead: the same
increment inside one data-modifying CTE that also inserts the check-in's key
row, its ledger rows and its audit row, for one check-in or a batch's many.
These two are the only statements in the code that change `xp`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Row, bindparam, insert, select, update

from rewards import metrics
from rewards.db import insert_ignoring_conflicts
from rewards.models import audit_event, partner, xp_ledger

_select_partner_for_update = (
    select(partner).where(partner.c.id == bindparam("partner_id")).with_for_update()
)
# A row this transaction inserted is locked by it: no second read needed.
_create_partner = insert_ignoring_conflicts(partner, "id").values(
    id=bindparam("partner_id"), created_at=bindparam("now"), updated_at=bindparam("now")
).returning(*partner.c)


@lru_cache(maxsize=None)
def _credit_statement(also_set: frozenset[str], also_add: frozenset[str]):
    """`xp = xp + :xp_delta`, plus the partner columns a job moves with the balance.

    One statement per shape, built on first use: a check-in moves its streak
    state and counts itself in the same UPDATE as its XP.
    """
    values = {"xp": partner.c.xp + bindparam("xp_delta"), "updated_at": bindparam("now")}
    values.update({column: bindparam(f"set_{column}") for column in sorted(also_set)})
    values.update({column: partner.c[column] + bindparam(f"add_{column}") for column in sorted(also_add)})
    return (update(partner).where(partner.c.id == bindparam("partner_id"))
            .values(values).returning(partner.c.xp))

_select_partners_for_update = (
    select(partner).where(partner.c.id.in_(bindparam("partner_ids", expanding=True)))
    .order_by(partner.c.id).with_for_update()
)
_create_partners = insert_ignoring_conflicts(partner, "id")

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


@dataclass(frozen=True)
class CheckinCredit:
    """An in-order check-in, priced, with everything its one statement writes.

    `audit_payload` is the audit row without `xp_before`/`xp_after`, which the
    statement adds from the balance it moved.
    """

    partner_id: int
    day: date
    streak_days: int
    longest_streak_days: int
    frozen_days: int
    base_xp: int
    bonus_xp: int
    multiplier: int
    xp_granted: int
    occurred_at: datetime
    entries: list[Entry]
    audit_payload: dict[str, Any]


# One statement for any number of check-ins of distinct partners, each the
# day after its partner's latest, every partner row already locked by this
# transaction. The key row decides: a day already there inserts nothing, so
# its partner is not credited and gets no ledger or audit row; the caller
# sees it missing from the result. Ledger rows chain from the balance the
# UPDATE returned, in the order given, so `balance_after` needs no guess.
_CREDIT_CHECKINS_SQL = """
WITH day_rows AS (
    SELECT * FROM jsonb_to_recordset(%(days)s::jsonb)
    AS d(partner_id bigint, day date, streak int, longest_streak int, frozen_days int, base_xp int,
         bonus_xp int, multiplier int, xp_granted int, occurred_at timestamptz, payload jsonb)
), inserted AS (
    INSERT INTO checkin (partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted,
                         occurred_at, frozen_days, created_at)
    SELECT partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted, occurred_at,
           frozen_days, %(now)s FROM day_rows
    ON CONFLICT (partner_id, day) DO NOTHING
    RETURNING partner_id, day
), credited AS (
    UPDATE partner AS p
    SET xp = p.xp + d.xp_granted, checkin_streak = d.streak, longest_streak = d.longest_streak,
        last_checkin_day = d.day, last_checkin_at = d.occurred_at,
        total_checkins = p.total_checkins + 1, updated_at = %(now)s
    FROM day_rows AS d JOIN inserted AS i ON i.partner_id = d.partner_id AND i.day = d.day
    WHERE p.id = d.partner_id
    RETURNING p.id AS partner_id, d.day, p.xp AS xp_after, d.xp_granted, d.payload
), ledger AS (
    INSERT INTO xp_ledger (partner_id, entry_type, base_amount, multiplier, amount, balance_after,
                           idempotency_key, rule_version, description, occurred_at, created_at)
    SELECT e.partner_id, e.entry_type, e.base_amount, e.multiplier, e.base_amount * e.multiplier,
           c.xp_after - c.xp_granted + e.paid_so_far, e.idempotency_key, %(rule_version)s,
           e.description, e.occurred_at, %(now)s
    FROM jsonb_to_recordset(%(entries)s::jsonb)
         AS e(partner_id bigint, entry_type text, base_amount bigint, multiplier int, paid_so_far bigint,
              idempotency_key text, description text, occurred_at timestamptz, position int)
    JOIN credited AS c ON c.partner_id = e.partner_id
    ORDER BY e.position
), audited AS (
    INSERT INTO audit_event (event_type, partner_id, payload, created_at)
    SELECT 'checkin', c.partner_id,
           c.payload || jsonb_build_object('xp_after', c.xp_after, 'xp_before', c.xp_after - c.xp_granted),
           %(now)s
    FROM credited AS c ORDER BY c.partner_id
)
SELECT partner_id, day, xp_after FROM credited
"""


def credit_checkins(conn: Connection, credits: list[CheckinCredit], *, rule_version: str,
                    now: datetime) -> dict[tuple[int, date], int]:
    """Apply in-order check-ins of distinct, locked partners in one statement (PostgreSQL).

    Returns xp after for each (partner, day) applied; a day whose key row
    was already there is missing from it, and nothing of it was written.
    The rows travel as two JSON documents: one parameter each, whatever the
    batch size, which costs the driver far less than a typed array per column.
    """
    days, entries = [], []
    for credit_ in credits:
        days.append(_day_row(credit_))
        entries.extend(_entry_rows(credit_, first_position=len(entries)))
    rows = conn.exec_driver_sql(_CREDIT_CHECKINS_SQL, {
        "days": json.dumps(days), "entries": json.dumps(entries), "rule_version": rule_version, "now": now})
    credited = {(partner_id, day): xp_after for partner_id, day, xp_after in rows}
    for credit_ in credits:
        if (credit_.partner_id, credit_.day) in credited:
            for entry in credit_.entries:
                metrics.tally_xp(entry.entry_type, entry.amount)
    return credited


def _day_row(credit_: CheckinCredit) -> dict[str, Any]:
    return {
        "partner_id": credit_.partner_id, "day": credit_.day.isoformat(), "streak": credit_.streak_days,
        "longest_streak": credit_.longest_streak_days, "frozen_days": credit_.frozen_days,
        "base_xp": credit_.base_xp, "bonus_xp": credit_.bonus_xp, "multiplier": credit_.multiplier,
        "xp_granted": credit_.xp_granted, "occurred_at": credit_.occurred_at.isoformat(),
        "payload": credit_.audit_payload,
    }


def _entry_rows(credit_: CheckinCredit, first_position: int) -> list[dict[str, Any]]:
    """The check-in's ledger rows, each with what the day has paid up to and including it."""
    rows, paid_so_far = [], 0
    for position, entry in enumerate(credit_.entries, start=first_position):
        paid_so_far += entry.amount
        rows.append({
            "partner_id": credit_.partner_id, "entry_type": entry.entry_type,
            "base_amount": entry.base_amount, "multiplier": entry.multiplier, "paid_so_far": paid_so_far,
            "idempotency_key": entry.idempotency_key, "description": entry.description,
            "occurred_at": credit_.occurred_at.isoformat(), "position": position,
        })
    return rows


def lock_partner(conn: Connection, partner_id: int, now: datetime) -> Row:
    """The partner's row, locked until the transaction ends; created on first sight.

    The lock makes a partner's jobs take turns, so streak state and balance
    always move together. Creation races are settled by the primary key.
    """
    params = {"partner_id": partner_id, "now": now}
    row = conn.execute(_select_partner_for_update, params).one_or_none()
    if row is None:
        row = conn.execute(_create_partner, params).one_or_none()
    if row is None:  # another job created it first: wait for its transaction like any other
        row = conn.execute(_select_partner_for_update, params).one()
    return row


def lock_partners(conn: Connection, partner_ids: list[int], now: datetime) -> dict[int, Row]:
    """Many partners' rows, locked in id order (as one-at-a-time locking would be), by id.

    Two jobs locking overlapping sets in the same order wait for each other
    instead of deadlocking. Partners seen for the first time are created,
    also in id order, and locked by their insert.
    """
    params = {"partner_ids": sorted(set(partner_ids))}
    rows = {row.id: row for row in conn.execute(_select_partners_for_update, params)}
    missing = [partner_id for partner_id in params["partner_ids"] if partner_id not in rows]
    if missing:
        conn.execute(_create_partners, [{"id": partner_id, "created_at": now, "updated_at": now}
                                        for partner_id in missing])
        rows.update((row.id, row) for row in conn.execute(_select_partners_for_update,
                                                           {"partner_ids": missing}))
    return rows


def lock_existing_partners(conn: Connection, partner_ids: list[int]) -> None:
    """Lock the rows of those partners that exist, in id order.

    A partner seen for the first time has no row to lock yet: the job creates
    it, and a concurrent job inserting the same id waits on that insert.
    """
    if partner_ids:
        conn.execute(_select_partners_for_update, {"partner_ids": sorted(set(partner_ids))}).all()


def credit(conn: Connection, partner_id: int, entries: list[Entry], *, occurred_at: datetime,
           rule_version: str, now: datetime, also_set: Mapping[str, Any] | None = None,
           also_add: Mapping[str, int] | None = None) -> int:
    """Move the entries' total onto the balance and write their ledger rows; returns xp after.

    In the same statement, `also_set` gives other partner columns new values
    and `also_add` adds to counters (`total_checkins + 1`).
    """
    also_set, also_add = also_set or {}, also_add or {}
    total = sum(entry.amount for entry in entries)
    params = {"partner_id": partner_id, "xp_delta": total, "now": now}
    params.update({f"set_{column}": value for column, value in also_set.items()})
    params.update({f"add_{column}": value for column, value in also_add.items()})
    statement = _credit_statement(frozenset(also_set), frozenset(also_add))
    xp_after = conn.execute(statement, params).scalar_one()
    write_ledger_rows(conn, partner_id, entries, xp_after=xp_after,
                      occurred_at=occurred_at, rule_version=rule_version, now=now)
    return xp_after


def write_ledger_rows(conn: Connection, partner_id: int, entries: list[Entry], *, xp_after: int,
                      occurred_at: datetime, rule_version: str, now: datetime) -> None:
    """Ledger rows for entries already added to the balance, chained to end at `xp_after`."""
    if not entries:
        return
    balance = xp_after - sum(entry.amount for entry in entries)
    rows = []
    for entry in entries:
        balance += entry.amount
        metrics.tally_xp(entry.entry_type, entry.amount)
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
