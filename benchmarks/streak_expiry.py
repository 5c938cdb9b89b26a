"""Streak expiry at scale: one run's time and rows over N partners (not a test).

    REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/rewards_scale_scratch \\
        .venv/bin/python -m benchmarks.streak_expiry          # SCALE_PARTNERS=1000000

The database (migrated, owner's URL: the fill needs TRUNCATE) is filled once
by generate_series; later runs only put the streaks back as filled. Twelve
time zones; 95% of partners hold a streak: 60% checked in yesterday (UTC),
25% today, 10% two days ago (due: lost, or alive on a PRO freeze) and 5% three
to ten days ago (lost); every tenth partner is PRO. Prints the first run
with the default limits, how many runs clear what is due, and one run an hour
later. Run it with PYTHONPATH set to another checkout to time that code.
"""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards import db, settings
from schedules import expire_streaks

ZONES = ("UTC", "Europe/London", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo",
         "Asia/Kolkata", "Australia/Sydney", "America/Sao_Paulo", "Africa/Lagos", "Pacific/Auckland",
         "Pacific/Honolulu")
TODAY = datetime(2026, 3, 10, tzinfo=timezone.utc).date()
NOW = datetime(2026, 3, 10, 6, tzinfo=timezone.utc)
RUNS_MAX = int(os.environ.get("SCALE_RUNS_MAX", 20))

_FILL = text("""
    INSERT INTO partner (id, checkin_streak, longest_streak, last_checkin_day, total_checkins, timezone,
                         pro_until, created_at, updated_at)
    SELECT g, s.streak, s.streak, s.day, s.streak, (CAST(:zones AS text[]))[1 + zone_index],
           CASE WHEN g % 10 = 0 THEN timestamptz '2030-01-01' END, now(), now()
    FROM generate_series(CAST(1 AS bigint), :partners) AS g,
    LATERAL (SELECT CAST((g * 7919) % 100 AS int) AS r, CAST(g % cardinality(CAST(:zones AS text[])) AS int)
                    AS zone_index, CAST(g % 40 AS int) AS spread_40, CAST(g % 8 AS int) AS spread_8) AS spread,
    LATERAL (SELECT CASE WHEN r < 5 THEN 0 ELSE 1 + spread_40 END AS streak,
                    CAST(:today AS date) - CASE WHEN r < 65 THEN 1 WHEN r < 90 THEN 0 WHEN r < 95 THEN 2
                                                ELSE 3 + spread_8 END AS day) AS s
""")
_RESTORE = text("UPDATE partner SET checkin_streak = longest_streak WHERE checkin_streak <> longest_streak")


def prepare(partners: int) -> None:
    engine = db.get_engine()
    with engine.begin() as conn:
        # The fill takes longer than the engine's statement timeout, which is for jobs.
        conn.execute(text("SET LOCAL statement_timeout = 0"))
        filled = conn.execute(text("SELECT count(*) FROM partner")).scalar_one()
        conn.execute(text("TRUNCATE outbox, audit_event, maintenance_checkpoint"))
        if filled != partners:
            conn.execute(text("TRUNCATE partner CASCADE"))
            conn.execute(_FILL, {"zones": list(ZONES), "partners": partners, "today": TODAY})
        else:
            conn.execute(_RESTORE)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("SET statement_timeout = 0"))
        conn.execute(text("VACUUM ANALYZE partner"))


def main() -> None:
    partners = int(os.environ.get("SCALE_PARTNERS", 1_000_000))
    limits = settings.get().maintenance
    prepare(partners)
    with db.get_engine().connect() as conn:
        due = conn.execute(text("SELECT count(*) FROM partner WHERE checkin_streak > 0 AND last_checkin_day"
                                " <= :day"), {"day": TODAY - timedelta(days=2)}).scalar_one()
    print(f"{partners:,} partners, {due:,} with a live streak last checked in two or more UTC days ago; "
          f"limits {limits.batch_size} x {limits.max_batches}")
    started, changed = time.perf_counter(), 0
    for number in range(1, RUNS_MAX + 1):
        summary = expire_streaks.run(db.get_engine(), NOW + timedelta(minutes=number), limits.batch_size,
                                     limits.max_batches)
        changed += summary.changed
        print(f"run {number}: {summary.took_ms / 1000:.2f} s, examined {summary.examined:,}, "
              f"reset {summary.changed:,}, more {summary.more}")
        if not summary.more:
            break
    print(f"{number} runs, {time.perf_counter() - started:.1f} s, {changed:,} reset in all")
    # No zone reaches midnight in the next hour: what a run with nothing newly due costs.
    idle = expire_streaks.run(db.get_engine(), NOW + timedelta(hours=1), limits.batch_size, limits.max_batches)
    print(f"an hour later: {idle.took_ms / 1000:.2f} s, examined {idle.examined:,}, reset {idle.changed:,}")


if __name__ == "__main__":
    main()
