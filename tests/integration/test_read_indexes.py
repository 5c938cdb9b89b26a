"""Each read query can be served by an index on PostgreSQL (EXPLAIN with sequential scans ruled out).

The test tables are tiny, so the planner would rightly scan them; with
enable_seqscan off it shows which index it would use at scale, and a query
no index can serve would still show a Seq Scan.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy import text

from rewards import analytics, leaderboards

T = datetime(2026, 3, 9, tzinfo=timezone.utc)
# A range that is not empty: the planner proves an empty one needs no scan at all.
WEEK_END = T + timedelta(days=7)
XP_BOARD = leaderboards._COLUMN_BOARDS["xp"]
STREAK_BOARD = leaderboards._COLUMN_BOARDS["streak"]


@pytest.fixture
def explain(conn):
    conn.execute(text("SET enable_seqscan = off"))
    yield lambda statement, **values: _plan(conn, statement, values)
    conn.execute(text("RESET enable_seqscan"))


# A partitioned table's index, by the name of each partition's index attached to it.
_PARENT_INDEXES = text("""
    SELECT child.relname, parent.relname FROM pg_inherits AS i
    JOIN pg_class AS child ON child.oid = i.inhrelid JOIN pg_class AS parent ON parent.oid = i.inhparent
    WHERE child.relkind = 'i'
""")


def _plan(conn, statement, values) -> str:
    """The plan, each partition's index named by the partitioned table's index it belongs to."""
    expanded = statement.compile(dialect=conn.dialect).construct_expanded_state(values)
    lines = conn.exec_driver_sql("EXPLAIN " + expanded.statement, expanded.parameters).scalars().all()
    plan = "\n".join(lines)
    assert "Seq Scan" not in plan, plan
    for child, parent in conn.execute(_PARENT_INDEXES):
        plan = plan.replace(f" {child} ", f" {parent} ")
    return plan


@pytest.mark.parametrize(("statement", "values", "index"), [
    (XP_BOARD.top_scores, {"limit": 100}, "ix_partner_xp_board"),
    (XP_BOARD.ids_between, {"low": 10, "high": 500}, "ix_partner_xp_board"),
    (XP_BOARD.count_above, {"score": 10}, "ix_partner_xp_board"),
    (STREAK_BOARD.top_scores, {"limit": 100}, "ix_partner_streak_board"),
    (STREAK_BOARD.count_tied_ahead, {"score": 3, "bucket_start": T, "bucket_end": T, "partner_id": 4},
     "ix_partner_streak_board"),
    (leaderboards._STANDINGS_OF["xp"], {"ids": [1, 2]}, "ix_xp_ledger_partner_id_occurred_at"),
    # Either ledger index narrows one partner's week; the planner picks by its statistics.
    (leaderboards._STANDINGS_OF["weekly"], {"ids": [1, 2], "week_start": T, "week_end": WEEK_END},
     ("ix_xp_ledger_partner_id_occurred_at", "ix_xp_ledger_occurred_at")),
    (leaderboards._ALL_STANDINGS["weekly"], {"week_start": T, "week_end": WEEK_END}, "ix_xp_ledger_occurred_at"),
])
def test_the_leaderboard_queries_are_index_ranges(explain, statement, values, index):
    plan = explain(statement, **values)
    assert any(name in plan for name in ((index,) if isinstance(index, str) else index)), plan


@pytest.mark.parametrize(("statement", "values", "index"), [
    (analytics._checkins_per_day, {"first_day": date(2026, 3, 1), "last_day": date(2026, 3, 9)}, "ix_checkin_day"),
    (analytics._XP_PER_DAY["postgresql"], {"start": T, "end": WEEK_END}, "ix_xp_ledger_occurred_at"),
    (analytics._attempts_by_status, {"start": T, "end": WEEK_END}, "ix_partner_task_started_at_task_id_status"),
    (analytics._streak_lengths, {}, "ix_partner_streak_board"),
])
def test_the_analytics_queries_are_index_ranges(explain, statement, values, index):
    assert index in explain(statement, **values)
