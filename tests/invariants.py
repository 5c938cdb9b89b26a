"""The invariants of DESIGN.md section 5, checked against the database after a test.

Each check reads what the engine wrote and fails with the offending rows, so
a broken invariant names the partner it broke for.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

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

# 2. Each check-in key was paid once: its ledger rows add up to exactly what the
#    check-in granted, and every check-in ledger row belongs to a check-in.
_CHECKIN_LEDGER_MISMATCHES = text(r"""
    SELECT c.partner_id, c.day, c.xp_granted, COALESCE(SUM(l.amount), 0) AS ledger_sum,
           COUNT(l.id) AS rows
    FROM checkin c
    LEFT JOIN xp_ledger l ON l.partner_id = c.partner_id
        AND l.entry_type IN ('checkin', 'streak_bonus')
        AND (l.idempotency_key = 'checkin:' || c.partner_id || ':' || c.day
             OR l.idempotency_key = 'checkin:' || c.partner_id || ':' || c.day || '\:bonus')
    GROUP BY c.partner_id, c.day, c.xp_granted, c.bonus_xp
    HAVING COALESCE(SUM(l.amount), 0) <> c.xp_granted
        OR COUNT(l.id) <> (CASE WHEN c.bonus_xp > 0 THEN 2 ELSE 1 END)
""")
_ORPHAN_CHECKIN_ROWS = text("""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type IN ('checkin', 'streak_bonus')
      AND NOT EXISTS (SELECT 1 FROM checkin c WHERE c.partner_id = l.partner_id
                      AND l.idempotency_key LIKE 'checkin:' || c.partner_id || ':' || c.day || '%')
""")

# 3. xp >= 0, balances never negative, amounts never zero.
_SIGN_VIOLATIONS = text("""
    SELECT 'partner' AS what, id FROM partner WHERE xp < 0
    UNION ALL SELECT 'ledger', id FROM xp_ledger WHERE amount = 0 OR balance_after < 0
""")

# The partner's streak summary agrees with its check-in rows.
_STREAK_SUMMARY_MISMATCHES = text("""
    SELECT p.id, p.total_checkins, COUNT(c.day) AS rows, p.last_checkin_day, MAX(c.day) AS last_day
    FROM partner p LEFT JOIN checkin c ON c.partner_id = p.id
    GROUP BY p.id, p.total_checkins, p.last_checkin_day
    HAVING p.total_checkins <> COUNT(c.day) OR p.last_checkin_day IS DISTINCT FROM MAX(c.day)
""")

# 4. referral_count == the referrals recorded for that referrer.
_REFERRAL_COUNT_MISMATCHES = text("""
    SELECT p.id, p.referral_count, COUNT(r.referee_id) AS rows
    FROM partner p LEFT JOIN referral r ON r.referrer_id = p.id
    GROUP BY p.id, p.referral_count
    HAVING p.referral_count <> COUNT(r.referee_id)
""")

# 5. Every task_reward ledger row pays a COMPLETED attempt, under that attempt's key...
_ORPHAN_TASK_REWARDS = text("""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type = 'task_reward'
      AND NOT EXISTS (SELECT 1 FROM partner_task t
                      WHERE t.status = 'COMPLETED' AND t.partner_id = l.partner_id
                        AND l.idempotency_key = 'task:' || t.partner_id || ':' || t.task_id || ':' || t.attempt)
""")
# ...and each COMPLETED attempt was paid exactly once (STARTED and EXPIRED ones never).
_TASK_PAYMENT_MISMATCHES = text("""
    SELECT t.partner_id, t.task_id, t.attempt, t.status, COUNT(l.id) AS payments
    FROM partner_task t
    LEFT JOIN xp_ledger l ON l.partner_id = t.partner_id AND l.entry_type = 'task_reward'
        AND l.idempotency_key = 'task:' || t.partner_id || ':' || t.task_id || ':' || t.attempt
    GROUP BY t.partner_id, t.task_id, t.attempt, t.status
    HAVING COUNT(l.id) <> (CASE WHEN t.status = 'COMPLETED' THEN 1 ELSE 0 END)
""")

# Every applied adjustment has exactly its one ledger row, and no refused one has any.
_ADJUSTMENT_LEDGER_MISMATCHES = text("""
    SELECT a.request_id, a.status, a.amount, COUNT(l.id) AS rows, COALESCE(SUM(l.amount), 0) AS ledger_sum
    FROM adjustment a
    LEFT JOIN xp_ledger l ON l.idempotency_key = 'adjustment:' || a.request_id
        AND l.entry_type = 'adjustment' AND l.partner_id = a.partner_id
    GROUP BY a.request_id, a.status, a.amount
    HAVING COUNT(l.id) <> (CASE WHEN a.status = 'applied' THEN 1 ELSE 0 END)
        OR (a.status = 'applied' AND COALESCE(SUM(l.amount), 0) <> a.amount)
""")
_ORPHAN_ADJUSTMENT_ROWS = text("""
    SELECT l.id, l.idempotency_key FROM xp_ledger l
    WHERE l.entry_type = 'adjustment'
      AND NOT EXISTS (SELECT 1 FROM adjustment a WHERE a.status = 'applied'
                      AND l.idempotency_key = 'adjustment:' || a.request_id)
""")

CHECKS = {
    "xp equals the ledger sum and the last balance_after": _BALANCE_MISMATCHES,
    "every ledger row continues its partner's balance chain": _BROKEN_CHAIN,
    "every check-in was paid exactly once": _CHECKIN_LEDGER_MISMATCHES,
    "every check-in ledger row belongs to a check-in": _ORPHAN_CHECKIN_ROWS,
    "no negative balance, no zero amount": _SIGN_VIOLATIONS,
    "partner check-in totals match the check-in rows": _STREAK_SUMMARY_MISMATCHES,
    "referral_count equals the referrer's referral rows": _REFERRAL_COUNT_MISMATCHES,
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
