"""rewards.maintenance.reconcile: check DESIGN.md section 5's invariants (daily by default).

Every check in CHECKS is one SQL statement over a batch of partner ids that
returns one row per broken invariant, partner id first. A mismatch becomes an
audit event and a `reconciliation.mismatch` outbox event in the batch's
transaction, and a log line at error level. Nothing here writes to partner or
xp_ledger: a balance is corrected by an operator with an adjustment, never by
the reconciler guessing which side is right.

Incremental by default: only partners with ledger rows added since the last
checkpoint (a partner whose balance changes always gets one). `full=True`
(`rewards reconcile --full`) checks every partner, which is what catches a
balance edited by hand without a ledger row.

What a run costs follows the rows to check, not the table. The incremental
walk reads the ledger in id order from its checkpoint, a batch of rows at a
time (the primary key's range), and checks the partners those rows belong
to, each partner once a run. Every batch saves, in its own transaction, how
far the walk got as the checkpoint, but never beyond the settled mark: ledger
ids are handed out before commit, so only ids of rows older than
REWARDS_RECONCILE_LAG_S can no longer be overtaken by a smaller one. A run
that stops at `max_batches` leaves the next one its place, so every partner
with new ledger rows is checked within ceil(new rows / (batch size x max
batches)) runs; rows newer than the lag are checked now and again next run.

A full run walks partner ids and keeps its own place (the `.full`
checkpoint, a partner id) the same way, going round from just after it to
the end and on from the first partner back to it. A run that finishes its
lap clears that place and, having checked every partner after the settled
rows committed, moves the incremental checkpoint up to the settled mark.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, bindparam, func, select, text

from rewards import contract, db
from rewards.contract import keys
from rewards.ledger import balance, outbox
from rewards.logs import log_event
from rewards.models import xp_ledger
from schedules.runner import Summary, checkpoint, run_exclusively, save_checkpoint

JOB = contract.MAINTENANCE_RECONCILE
logger = logging.getLogger("rewards.maintenance")
# The summary keeps this many mismatches for the CLI's table; all are recorded.
MISMATCHES_KEPT = 1_000


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    query: TextClause


def _check(name: str, description: str, sql: str) -> Check:
    return Check(name, description, text(sql).bindparams(bindparam("ids", expanding=True)))


_CHECKIN_KEY = keys.sql(keys.CHECKIN, partner_id="c.partner_id", day="c.day")
_STREAK_BONUS_KEY = keys.sql(keys.STREAK_BONUS, partner_id="c.partner_id", day="c.day")
_TASK_KEY = keys.sql(keys.TASK, partner_id="t.partner_id", task_id="t.task_id", attempt="t.attempt")
# LIKE patterns: every correction of a day, of an attempt.
_CHECKIN_CORRECTIONS = keys.sql(keys.CHECKIN_CORRECTION, partner_id="c.partner_id", day="c.day")
_TASK_CORRECTIONS = keys.sql(keys.TASK_CORRECTION, partner_id="t.partner_id", task_id="t.task_id",
                             attempt="t.attempt")


CHECKS: tuple[Check, ...] = (
    _check("balance_matches_ledger", "xp equals the sum of the ledger and its last balance_after", """
        SELECT partner_id, xp, ledger_sum, last_balance_after FROM (
            SELECT p.id AS partner_id, p.xp,
                   COALESCE((SELECT SUM(l.amount) FROM xp_ledger l WHERE l.partner_id = p.id), 0)
                       AS ledger_sum,
                   COALESCE((SELECT l.balance_after FROM xp_ledger l WHERE l.partner_id = p.id
                             ORDER BY l.id DESC LIMIT 1), 0) AS last_balance_after
            FROM partner p WHERE p.id IN :ids) balances
        WHERE xp <> ledger_sum OR xp <> last_balance_after
    """),
    _check("balance_chain_unbroken", "each ledger row's balance_after is the previous one plus its amount", """
        SELECT partner_id, id AS ledger_id, amount, balance_after, previous_balance_after FROM (
            SELECT partner_id, id, amount, balance_after,
                   COALESCE(LAG(balance_after) OVER (PARTITION BY partner_id ORDER BY id), 0)
                       AS previous_balance_after
            FROM xp_ledger WHERE partner_id IN :ids) chain
        WHERE balance_after <> previous_balance_after + amount
    """),
    _check("checkin_paid_once", "each check-in paid once; with its corrections it adds up to its price", f"""
        SELECT c.partner_id, c.day, c.xp_granted, c.xp_shortfall, COALESCE(SUM(l.amount), 0) AS ledger_sum,
               SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) AS payments,
               SUM(CASE WHEN l.entry_type = 'streak_bonus' THEN 1 ELSE 0 END) AS bonuses
        FROM checkin c
        LEFT JOIN xp_ledger l ON l.partner_id = c.partner_id
            AND (l.idempotency_key IN ({_CHECKIN_KEY}, {_STREAK_BONUS_KEY})
                 OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS}))
        WHERE c.partner_id IN :ids
        GROUP BY c.partner_id, c.day, c.xp_granted, c.xp_shortfall
        HAVING COALESCE(SUM(l.amount), 0) <> c.xp_granted + c.xp_shortfall
            OR SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) <> 1
            OR SUM(CASE WHEN l.entry_type = 'streak_bonus' THEN 1 ELSE 0 END) > 1
    """),
    _check("correction_shortfall", "a re-priced day took back less than it should: the balance was short", """
        SELECT partner_id, day, xp_granted, xp_shortfall FROM checkin
        WHERE partner_id IN :ids AND xp_shortfall > 0
    """),
    _check("no_negative_balance_or_zero_amount", "xp and balances are never negative, amounts never 0", """
        SELECT id AS partner_id, 'partner.xp' AS field, id AS row_id, xp AS value
        FROM partner WHERE id IN :ids AND xp < 0
        UNION ALL
        SELECT partner_id, 'xp_ledger.amount/balance_after', id, amount
        FROM xp_ledger WHERE partner_id IN :ids AND (amount = 0 OR balance_after < 0)
    """),
    _check("referral_count_matches", "referral_count equals the referrals recorded for the referrer", """
        SELECT p.id AS partner_id, p.referral_count,
               (SELECT COUNT(*) FROM referral r WHERE r.referrer_id = p.id) AS referral_rows
        FROM partner p
        WHERE p.id IN :ids
          AND p.referral_count <> (SELECT COUNT(*) FROM referral r WHERE r.referrer_id = p.id)
    """),
    _check("task_paid_once", "each completed attempt paid once, with its corrections adding up to its price", f"""
        SELECT t.partner_id, t.task_id, t.attempt, t.status, t.xp_granted, COALESCE(SUM(l.amount), 0) AS ledger_sum,
               SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END) AS payments
        FROM partner_task t
        LEFT JOIN xp_ledger l ON l.partner_id = t.partner_id
            AND ((l.entry_type = 'task_reward' AND l.idempotency_key = {_TASK_KEY})
                 OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_TASK_CORRECTIONS}))
        WHERE t.partner_id IN :ids
        GROUP BY t.partner_id, t.task_id, t.attempt, t.status, t.xp_granted
        HAVING COALESCE(SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END), 0)
                   <> (CASE WHEN t.status = 'COMPLETED' THEN 1 ELSE 0 END)
            OR COALESCE(SUM(l.amount), 0) <> COALESCE(t.xp_granted, 0)
    """),
    _check("correction_belongs", "every correction re-prices a check-in or a completed attempt of its partner", f"""
        SELECT l.partner_id, l.id AS ledger_id, l.idempotency_key FROM xp_ledger l
        WHERE l.partner_id IN :ids AND l.entry_type = 'correction'
          AND NOT EXISTS (SELECT 1 FROM checkin c WHERE c.partner_id = l.partner_id
                          AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS})
          AND NOT EXISTS (SELECT 1 FROM partner_task t WHERE t.partner_id = l.partner_id
                          AND t.status = 'COMPLETED' AND l.idempotency_key LIKE {_TASK_CORRECTIONS})
    """),
)

# The full walk's own place, a partner id; the incremental one is a ledger id.
FULL_JOB = f"{JOB}.full"
# Partner ids past the last one (the end of the full walk's order).
_LAST_ID = 2**63 - 1

_partners_between = text(
    "SELECT id FROM partner WHERE id > :after AND id <= :upto ORDER BY id LIMIT :limit")
_ledger_rows_after = (
    select(xp_ledger.c.id, xp_ledger.c.partner_id)
    .where(xp_ledger.c.id > bindparam("after"))
    .order_by(xp_ledger.c.id)
    .limit(bindparam("limit"))
)
# Reads back from the newest row to the first one older than the lag: the lag's worth of rows.
_settled_ledger_id = select(func.coalesce(func.max(xp_ledger.c.id), 0)).where(
    xp_ledger.c.id > bindparam("since"), xp_ledger.c.created_at < bindparam("settled_before"))


def run(engine: Engine, now: datetime, batch_size: int, *, full: bool = False, lag_s: int = 300,
        max_batches: int = 1_000_000) -> Summary:
    """Check the invariants as of `now`; the summary lists the mismatches found."""
    walk = _full_walk if full else _incremental_walk
    return run_exclusively(engine, JOB, now, lambda summary: walk(
        engine, now, batch_size, lag_s, max_batches, summary))


def _settled_mark(conn: Connection, since: int, now: datetime, lag_s: int) -> int:
    """The ledger id below which every row has committed: the newest one older than the lag."""
    # Ids are handed out before commit: a row older than the lag can no
    # longer appear below this mark, so a checkpoint may move up to it.
    return max(since, conn.execute(_settled_ledger_id, {
        "since": since, "settled_before": now - timedelta(seconds=lag_s)}).scalar_one())


def _incremental_walk(engine: Engine, now: datetime, batch_size: int, lag_s: int, max_batches: int,
                      summary: Summary) -> None:
    """Check the partners of the ledger rows after the checkpoint, `batch_size` rows a batch."""
    with engine.connect() as conn:
        since = checkpoint(conn, JOB)
        settled_id = _settled_mark(conn, since, now, lag_s)
    summary.details.update(mode="incremental", since_ledger_id=since, mismatches=0, found=[])
    after_id, checked = since, set()
    while True:
        if summary.batches >= max_batches:
            summary.more = True
            return
        with db.snapshot_transaction(engine) as conn:
            rows = conn.execute(_ledger_rows_after, {"after": after_id, "limit": batch_size}).all()
            if not rows:
                return
            ids = sorted({row.partner_id for row in rows} - checked)
            _check_batch(conn, ids, now, summary)
            after_id = rows[-1].id
            if min(after_id, settled_id) > since:
                save_checkpoint(conn, JOB, min(after_id, settled_id), now)
        checked.update(ids)


def _full_walk(engine: Engine, now: datetime, batch_size: int, lag_s: int, max_batches: int,
               summary: Summary) -> None:
    """Check every partner: a lap from just after the full checkpoint round to it."""
    with engine.connect() as conn:
        since = checkpoint(conn, JOB)
        settled_id = _settled_mark(conn, since, now, lag_s)
        resume_after = checkpoint(conn, FULL_JOB)
    summary.details.update(mode="full", since_ledger_id=0, mismatches=0, found=[])
    lap = [(resume_after, _LAST_ID)] + ([(0, resume_after)] if resume_after else [])
    for after_id, upto_id in lap:
        if not _full_segment(engine, now, batch_size, max_batches, after_id, upto_id, summary):
            summary.more = True
            return
    with engine.begin() as conn:
        save_checkpoint(conn, FULL_JOB, 0, now)
        save_checkpoint(conn, JOB, settled_id, now)


def _full_segment(engine: Engine, now: datetime, batch_size: int, max_batches: int,
                  after_id: int, upto_id: int, summary: Summary) -> bool:
    """Check the partners with ids in (after_id, upto_id]; True when none of them is left."""
    while summary.batches < max_batches:
        with db.snapshot_transaction(engine) as conn:
            ids = conn.execute(_partners_between, {"after": after_id, "upto": upto_id,
                                                   "limit": batch_size}).scalars().all()
            if not ids:
                return True
            _check_batch(conn, ids, now, summary)
            save_checkpoint(conn, FULL_JOB, ids[-1], now)
        after_id = ids[-1]
    return False


def _check_batch(conn: Connection, ids: list[int], now: datetime, summary: Summary) -> None:
    summary.batches += 1
    summary.examined += len(ids)
    if ids:
        _record(conn, _mismatches(conn, ids), now, summary)


def _mismatches(conn: Connection, ids: list[int]) -> list[dict[str, Any]]:
    found = []
    for check in CHECKS:
        for row in conn.execute(check.query, {"ids": ids}).mappings():
            details = {name: _jsonable(value) for name, value in row.items() if name != "partner_id"}
            found.append({"check": check.name, "partner_id": row["partner_id"], "details": details})
    return found


def _record(conn: Connection, found: list[dict[str, Any]], now: datetime, summary: Summary) -> None:
    for mismatch in found:
        balance.audit(conn, outbox.RECONCILIATION_MISMATCH, mismatch["partner_id"], mismatch, now)
        log_event(logger, logging.ERROR, outbox.RECONCILIATION_MISMATCH, check=mismatch["check"],
                  partner_id=mismatch["partner_id"],
                  **{name: value for name, value in mismatch["details"].items()})
    outbox.emit_many(conn, [outbox.Event(outbox.RECONCILIATION_MISMATCH, m["partner_id"], m)
                            for m in found], now=now)
    summary.details["mismatches"] += len(found)
    room = MISMATCHES_KEPT - len(summary.details["found"])
    summary.details["found"].extend(found[:max(0, room)])


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value
