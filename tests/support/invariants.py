"""The invariants of DESIGN.md section 5, checked against the database after a test.

Each check reads what the engine wrote and fails with the offending rows, so
a broken invariant names the partner it broke for.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from rewards.contract import keys
from rewards.rules import STREAK_BADGES

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
#    `checkin` row, at most one `streak_bonus` row, and with its corrections
#    they add up to what the day pays now (plus what a correction could not
#    take back); every check-in and correction row belongs to a check-in or
#    a completed attempt.
_CHECKIN_LEDGER_MISMATCHES = text(f"""
    SELECT c.partner_id, c.day, c.xp_granted, c.xp_shortfall, COALESCE(SUM(l.amount), 0) AS ledger_sum,
           SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) AS payments,
           SUM(CASE WHEN l.entry_type = 'streak_bonus' THEN 1 ELSE 0 END) AS bonuses,
           SUM(CASE WHEN l.entry_type = 'correction' THEN 1 ELSE 0 END) AS corrections
    FROM checkin c
    LEFT JOIN xp_ledger l ON l.partner_id = c.partner_id
        AND (l.idempotency_key IN ({_CHECKIN_KEY}, {_STREAK_BONUS_KEY})
             OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_CHECKIN_CORRECTIONS}))
    GROUP BY c.partner_id, c.day, c.xp_granted, c.xp_shortfall, c.revision
    HAVING COALESCE(SUM(l.amount), 0) <> c.xp_granted + c.xp_shortfall
        OR SUM(CASE WHEN l.entry_type = 'checkin' THEN 1 ELSE 0 END) <> 1
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

# The partner's streak summary agrees with its check-in rows: count, latest
# day, longest streak (re-pricing keeps it the maximum of the rows).
_STREAK_SUMMARY_MISMATCHES = text("""
    SELECT p.id, p.total_checkins, COUNT(c.day) AS rows, p.last_checkin_day, MAX(c.day) AS last_day,
           p.longest_streak, MAX(c.streak) AS longest_row
    FROM partner p LEFT JOIN checkin c ON c.partner_id = p.id
    GROUP BY p.id, p.total_checkins, p.last_checkin_day, p.longest_streak
    HAVING p.total_checkins <> COUNT(c.day) OR p.last_checkin_day IS DISTINCT FROM MAX(c.day)
        OR (COUNT(c.day) > 0 AND p.longest_streak <> MAX(c.streak))
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
# A partner holds exactly the streak badges their longest streak reached.
_BADGES = ", ".join(f"('{badge}', {threshold})" for threshold, badge in STREAK_BADGES)
_BADGE_MISMATCHES = text(f"""
    WITH threshold(badge, streak_days) AS (VALUES {_BADGES})
    SELECT b.partner_id, b.badge, b.streak_days, p.longest_streak FROM partner_badge b
    JOIN partner p ON p.id = b.partner_id
    WHERE b.streak_days > p.longest_streak
    UNION ALL
    SELECT p.id, t.badge, t.streak_days, p.longest_streak FROM partner p CROSS JOIN threshold t
    WHERE p.longest_streak >= t.streak_days
      AND NOT EXISTS (SELECT 1 FROM partner_badge b WHERE b.partner_id = p.id AND b.badge = t.badge)
""")

# 4. referral_count == the referrals recorded for that referrer.
_REFERRAL_COUNT_MISMATCHES = text("""
    SELECT p.id, p.referral_count, COUNT(r.referee_id) AS rows
    FROM partner p LEFT JOIN referral r ON r.referrer_id = p.id
    GROUP BY p.id, p.referral_count
    HAVING p.referral_count <> COUNT(r.referee_id)
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
# never), its payment and corrections adding up to what it pays now.
_TASK_PAYMENT_MISMATCHES = text(f"""
    SELECT t.partner_id, t.task_id, t.attempt, t.status, t.xp_granted,
           SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END) AS payments,
           COALESCE(SUM(l.amount), 0) AS ledger_sum
    FROM partner_task t
    LEFT JOIN xp_ledger l ON l.partner_id = t.partner_id
        AND ((l.entry_type = 'task_reward' AND l.idempotency_key = {_TASK_KEY})
             OR (l.entry_type = 'correction' AND l.idempotency_key LIKE {_TASK_CORRECTIONS}))
    GROUP BY t.partner_id, t.task_id, t.attempt, t.status, t.xp_granted
    HAVING COALESCE(SUM(CASE WHEN l.entry_type = 'task_reward' THEN 1 ELSE 0 END), 0)
               <> (CASE WHEN t.status = 'COMPLETED' THEN 1 ELSE 0 END)
        OR COALESCE(SUM(l.amount), 0) <> COALESCE(t.xp_granted, 0)
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

CHECKS = {
    "xp equals the ledger sum and the last balance_after": _BALANCE_MISMATCHES,
    "every ledger row continues its partner's balance chain": _BROKEN_CHAIN,
    "every check-in was paid exactly once": _CHECKIN_LEDGER_MISMATCHES,
    "every check-in ledger row belongs to a check-in": _ORPHAN_CHECKIN_ROWS,
    "every correction belongs to a check-in or a completed attempt": _ORPHAN_CORRECTIONS,
    "no negative balance, no zero amount": _SIGN_VIOLATIONS,
    "partner check-in totals match the check-in rows": _STREAK_SUMMARY_MISMATCHES,
    "every freeze a check-in used is recorded, and only those": _FREEZE_MISMATCHES,
    "a partner holds exactly the badges their longest streak reached": _BADGE_MISMATCHES,
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
