"""Leaderboard reads at scale: Redis against the SQL board, on the same data.

Fills its own database with PARTNERS partners (default 1,000,000) in a few
set-based statements: a balance, a streak and two ledger rows each (one in
this ISO week, one in the last, so the weekly board has a week to sum).
Then rebuilds the Redis boards from PostgreSQL, and times, board by board,
the top 100 and a partner's rank read from Redis and from SQL
(rewards.leaderboards.top / rank_of with and without Redis). Medians of
repeated reads on a warm cache; the machine is shared, so figures are noisy.

    make bench-leaderboard                      # 1,000,000 partners
    BENCH_PARTNERS=100000 make bench-leaderboard
"""

from __future__ import annotations

import os
import random
import statistics
import time
from datetime import datetime, timezone

import redis
from sqlalchemy import text

from rewards import db, leaderboards
from rewards import settings as settings_module
from rewards.cli.tables import render
from schedules import update_leaderboards

PARTNERS = int(os.environ.get("BENCH_PARTNERS", "1000000"))
SEED = 7
NOW = datetime.now(timezone.utc)

# A long-tailed XP distribution (many small balances, few large ones), streaks
# from 0 to 120 days with most short, and two ledger rows that add up to the
# balance: the older one early last week, the newer one earlier this week.
FILL = (
    "SELECT setseed(0.7)",
    "TRUNCATE outbox, partner_badge, streak_freeze, maintenance_checkpoint, job_failure, audit_event,"
    " xp_ledger, adjustment, referral, partner_task, checkin, partner RESTART IDENTITY CASCADE",
    """INSERT INTO partner (id, xp, checkin_streak, longest_streak, last_checkin_day, last_checkin_at,
                            total_checkins, created_at, updated_at)
       SELECT g, xp, streak, streak, (:now)::date, last_at, streak, :now, :now
       FROM (SELECT g, (10 + floor(power(random(), 3) * 20000))::bigint AS xp,
                    floor(power(random(), 4) * 120)::int AS streak,
                    :now - random() * interval '20 hours' AS last_at
             FROM generate_series(1, :partners) AS g) AS p""",
    """INSERT INTO xp_ledger (partner_id, entry_type, base_amount, multiplier, amount, balance_after,
                              idempotency_key, rule_version, description, occurred_at, created_at)
       SELECT id, 'correction', xp / 2, 1, xp / 2, xp / 2, 'bench-1-' || id, 'bench', 'bench',
              date_trunc('week', :now) - interval '6 days' + random() * interval '2 days', :now
       FROM partner WHERE xp / 2 > 0
       UNION ALL
       SELECT id, 'correction', xp - xp / 2, 1, xp - xp / 2, xp, 'bench-2-' || id, 'bench', 'bench',
              greatest(date_trunc('week', :now), :now - random() * interval '3 days'), :now
       FROM partner""",
    "ANALYZE partner",
    "ANALYZE xp_ledger",
)


def fill() -> None:
    started = time.perf_counter()
    with db.transaction() as conn:
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        for statement in FILL:
            conn.execute(text(statement), {"now": NOW, "partners": PARTNERS})
    print(f"filled {PARTNERS:,} partners in {time.perf_counter() - started:.1f} s")


def median_ms(read, repeats: int) -> float:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        read()
        timings.append((time.perf_counter() - started) * 1000)
    return statistics.median(timings)


def measure(store: redis.Redis, board: leaderboards.Board, ids: list[int], repeats: int) -> list:
    engine = db.get_engine()
    with engine.connect() as conn:
        conn.execute(text("SET statement_timeout = 0"))
        redis_top = median_ms(lambda: leaderboards.top(conn, board, 100, store=store), 50)
        sql_top = median_ms(lambda: leaderboards.top(conn, board, 100), repeats)
        picks = iter(ids * 100)
        redis_rank = median_ms(lambda: leaderboards.rank_of(conn, board, next(picks), store=store), 50)
        sql_rank = median_ms(lambda: leaderboards.rank_of(conn, board, next(picks)), repeats)
        assert leaderboards.top(conn, board, 100, store=store).entries == leaderboards.sql_top(conn, board, 100)
    return [board.kind, redis_top, sql_top, redis_rank, sql_rank]


def explain(statement: str) -> None:
    with db.get_engine().connect() as conn:
        plan = conn.execute(text("EXPLAIN " + statement)).scalars().all()
    print(f"\n{statement}\n" + "\n".join(f"  {line}" for line in plan))


def main() -> None:
    current = settings_module.get()
    store = redis.Redis.from_url(current.redis_url, socket_timeout=120)
    store.flushdb()
    fill()
    started = time.perf_counter()
    summary = update_leaderboards.rebuild(db.get_engine(), store, NOW, lag_s=update_leaderboards.lag_s(current))
    print(f"rebuilt the Redis boards {summary.details['boards']} in {time.perf_counter() - started:.1f} s")
    ids = random.Random(SEED).sample(range(1, PARTNERS + 1), 20)
    rows = []
    for kind in leaderboards.KINDS:
        board = leaderboards.board(kind, NOW)
        on_board = [pid for pid in ids if store.zscore(board.key, leaderboards.member(pid)) is not None]
        rows.append(measure(store, board, on_board, 3 if kind == leaderboards.WEEKLY else 10))
    print(render(["board", "top 100 Redis ms", "top 100 SQL ms", "rank Redis ms", "rank SQL ms"],
                 [[kind, *(round(value, 2) for value in values)] for kind, *values in rows],
                 title=f"\nLeaderboard reads at {PARTNERS:,} partners (medians)"))
    explain("SELECT xp FROM partner WHERE xp > 0 ORDER BY xp DESC LIMIT 100")
    explain("SELECT count(*) FROM partner WHERE xp > 5000")
    explain("SELECT checkin_streak FROM partner WHERE checkin_streak > 0 ORDER BY checkin_streak DESC LIMIT 100")
    store.flushdb()
    store.close()


if __name__ == "__main__":
    main()
