"""The tables agree with each other: DESIGN.md section 5's bookkeeping, checked after each integration test.

Each check reads what the engine wrote and fails with the offending rows, so
a broken invariant names the partner it broke for. None of them says whether
a figure follows from the rules: a ledger consistently wrong passes here.
That is the oracle's job (tests/support/oracle.py), which compares each
partner's balance, check-in count, last day, longest streak, referral count
and badges, each day's streak, freeze and price, each attempt's price, and
the ledger's sum per day and per attempt, with the reference model
(chaos/model.py). What stays here is what the model has no view of, the
same kind of check the reconcile job runs in production: the balance
against the ledger and its balance_after chain, one payment row per key
(a payment, at most one bonus, no more corrections than revisions), no
ledger row without the check-in, attempt or adjustment it pays, freeze rows
matching the check-ins that used them, and signs.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from rewards.contract import keys

_CHECKIN_KEY = keys.sql(keys.CHECKIN, partner_id="c.partner_id", day="c.day")
_STREAK_BONUS_KEY = keys.sql(keys.STREAK_BONUS, partner_id="c.partner_id", day="c.day")
_TASK_KEY = keys.sql(keys.TASK, partner_id="t.partner_id", task_id="t.task_id", attempt="t.attempt")
# LIKE patterns: every correction of a day, of an attempt.
_CHECKIN_CORRECTIONS = keys.sql(keys.CHECKIN_CORRECTION, partner_id="c.partner_id", day="c.day")
_TASK_CORRECTIONS = keys.sql(keys.TASK_CORRECTION, partner_id="t.partner_id", task_id="t.task_id",
                             attempt="t.attempt")
_ADJUSTMENT_KEY = keys.sql(keys.ADJUSTMENT, request_id="a.request_id")

# 1. xp == SUM(ledger) and the last balance_after == xp (a partner with no rows has 0).
_BALANCE_MISMATCHES = text("""
    SELECT p.id, p.xp, COALESCE(SUM(l.amount), 0) AS ledger_sum,
           (SELECT balance_after FROM xp_ledger WHERE partner_id = p.id ORDER BY id DESC LIMIT 1)
               AS last_balance
    FROM partner p LEFT JOIN xp_ledger l ON l.partner_id = p.id
    GROUP BY p.id, p.xp
    HAVING p.xp <> COALESCE(SUM(l.amount), 0)
        OR p.xp <> COALESCE((SELECT balance_after FROM xp_ledger
                             WHERE partner_id = p.id ORDER BY id DESC LIMIT 1), 0)
""")

# Each ledger row continues its partner's chain: previous balance + amount.
_BROKEN_CHAIN = text("""
    SELECT partner_id, id, amount, balance_after, previous_balance FROM (
        SELECT partner_id, id, amount, balance_after,
               COALESCE(LAG(balance_after) OVER (PARTITION BY partner_id ORDER BY id), 0)
                   AS previous_balance
        FROM xp_ledger) chain
    WHERE balance_after <> previous_balance + amount
""")

# 2. Each check-in was paid once, and re-priced only by corrections: one
#    `checkin` row, at most one `streak_bonus` row, no more corrections than
#    revisions (what they add up to is the oracle's to check); every
#    check-in and correction row belongs to a check-in or a completed attempt.
_CHECKIN_LEDGER_MISMATCHES = text(f"""
    SELECT c.partner_id, c.day,
           SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) AS payments,
           SUM(CASE WHEN l.entry_type = 'streak_bonus' THEN 1 ELSE 0 END) AS bonuses,
           SUM(CASE WHEN l.entry_type = 'correction' THEN 1 ELSE 0 END) AS corrections
    FROM checkin c
    LEFT JOIN xp_ledger l ON l.partner_id = c.partner_id
        AND (l.idempotency_key IN ({_CHECKIN_KEY}, {_STREAK_BONUS_KEY})
             OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS}))
    GROUP BY c.partner_id, c.day, c.revision
    HAVING SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) <> 1
        OR SUM(CASE WHEN l.entry_type = 'streak_bonus' THEN 1 ELSE 0 END) > 1
        OR SUM(CASE WHEN l.entry_type = 'correction' THEN 1 ELSE 0 END) > c.revision
""")
_ORPHAN_CHECKIN_ROWS = text(f"""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type IN ('checkin', 'streak_bonus')
      AND NOT EXISTS (SELECT 1 FROM checkin c WHERE c.partner_id = l.partner_id
                      AND l.idempotency_key IN ({_CHECKIN_KEY}, {_STREAK_BONUS_KEY}))
""")
_ORPHAN_CORRECTIONS = text(f"""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type = 'correction'
      AND NOT EXISTS (SELECT 1 FROM checkin c WHERE c.partner_id = l.partner_id
                      AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS})
      AND NOT EXISTS (SELECT 1 FROM partner_task t WHERE t.partner_id = l.partner_id
                      AND t.status = 'COMPLETED' AND l.idempotency_key LIKE {_TASK_CORRECTIONS})
""")

# 3. xp >= 0, balances never negative, amounts never zero.
_SIGN_VIOLATIONS = text("""
    SELECT 'partner' AS what, id FROM partner WHERE xp < 0
    UNION ALL SELECT 'ledger', id FROM xp_ledger WHERE amount = 0 OR balance_after < 0
""")

# Each check-in that used a freeze has its freeze row, and each freeze its check-in.
_FREEZE_MISMATCHES = text("""
    SELECT c.partner_id, c.day, 'no freeze row' FROM checkin c
    WHERE c.frozen_days > 0 AND NOT EXISTS (
        SELECT 1 FROM streak_freeze f WHERE f.partner_id = c.partner_id AND f.checkin_day = c.day)
    UNION ALL
    SELECT f.partner_id, f.checkin_day, f.iso_week FROM streak_freeze f
    WHERE NOT EXISTS (SELECT 1 FROM checkin c WHERE c.partner_id = f.partner_id
                      AND c.day = f.checkin_day AND c.frozen_days > 0)
""")
# 5. Every task_reward ledger row pays a COMPLETED attempt, under that attempt's key...
_ORPHAN_TASK_REWARDS = text(f"""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type = 'task_reward'
      AND NOT EXISTS (SELECT 1 FROM partner_task t
                      WHERE t.status = 'COMPLETED' AND t.partner_id = l.partner_id
                        AND l.idempotency_key = {_TASK_KEY})
""")
# ...and each COMPLETED attempt was paid exactly once (STARTED and EXPIRED ones
# never); what its payment and corrections add up to is the oracle's to check.
_TASK_PAYMENT_MISMATCHES = text(f"""
    SELECT t.partner_id, t.task_id, t.attempt, t.status,
           SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END) AS payments
    FROM partner_task t
    LEFT JOIN xp_ledger l ON l.partner_id = t.partner_id
        AND l.entry_type = 'task_reward' AND l.idempotency_key = {_TASK_KEY}
    GROUP BY t.partner_id, t.task_id, t.attempt, t.status
    HAVING COALESCE(SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END), 0)
               <> (CASE WHEN t.status = 'COMPLETED' THEN 1 ELSE 0 END)
""")

# Every applied adjustment has exactly its one ledger row, and no refused one has any.
_ADJUSTMENT_LEDGER_MISMATCHES = text(f"""
    SELECT a.request_id, a.status, a.amount, COUNT(l.id) AS rows, COALESCE(SUM(l.amount), 0) AS ledger_sum
    FROM adjustment a
    LEFT JOIN xp_ledger l ON l.idempotency_key = {_ADJUSTMENT_KEY}
        AND l.entry_type = 'adjustment' AND l.partner_id = a.partner_id
    GROUP BY a.request_id, a.status, a.amount
    HAVING COUNT(l.id) <> (CASE WHEN a.status = 'applied' THEN 1 ELSE 0 END)
        OR (a.status = 'applied' AND COALESCE(SUM(l.amount), 0) <> a.amount)
""")
_ORPHAN_ADJUSTMENT_ROWS = text(f"""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type = 'adjustment'
      AND NOT EXISTS (SELECT 1 FROM adjustment a WHERE a.status = 'applied'
                      AND l.idempotency_key = {_ADJUSTMENT_KEY})
""")

# The key table's row for each ledger row points back at it (the trigger of migration 0012).
_UNKEYED_LEDGER_ROWS = text("""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    LEFT JOIN xp_ledger_key k ON k.idempotency_key = l.idempotency_key
    WHERE k.ledger_id IS DISTINCT FROM l.id
""")

CHECKS = {
    "xp equals the ledger sum and the last balance_after": _BALANCE_MISMATCHES,
    "every ledger row holds its idempotency key in xp_ledger_key": _UNKEYED_LEDGER_ROWS,
    "every ledger row continues its partner's balance chain": _BROKEN_CHAIN,
    "every check-in was paid by one payment row, at most one bonus row": _CHECKIN_LEDGER_MISMATCHES,
    "every check-in ledger row belongs to a check-in": _ORPHAN_CHECKIN_ROWS,
    "every correction belongs to a check-in or a completed attempt": _ORPHAN_CORRECTIONS,
    "no negative balance, no zero amount": _SIGN_VIOLATIONS,
    "every freeze a check-in used is recorded, and only those": _FREEZE_MISMATCHES,
    "every task_reward ledger row belongs to a COMPLETED partner_task": _ORPHAN_TASK_REWARDS,
    "each COMPLETED attempt was paid exactly once": _TASK_PAYMENT_MISMATCHES,
    "every applied adjustment has one ledger row, a refused one none": _ADJUSTMENT_LEDGER_MISMATCHES,
    "every adjustment ledger row belongs to an applied adjustment": _ORPHAN_ADJUSTMENT_ROWS,
}


def violations(conn: Connection) -> dict[str, list]:
    found = {}
    for name, query in CHECKS.items():
        rows = conn.execute(query).fetchall()
        if rows:
            found[name] = [tuple(row) for row in rows[:10]]
    return found


def assert_invariants(conn: Connection) -> None:
    found = violations(conn)
    assert not found, f"invariants broken: {found}"
