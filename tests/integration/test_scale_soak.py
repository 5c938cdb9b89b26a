"""The scale soak (`make soak-scale`) at 2,000 partners, on a database of its own.

The soak's own functions, the same ones the full run uses: a loaded history,
a day of check-ins through the batched path, every maintenance job at the
day's hours, a full reconcile, the leaderboards and, in the second test, the
migrations to head under a writer. Its database is the suite's name with
`_scale` added, created and dropped here with the owner's URL; its Redis
database is the suite's leaderboard one, which every integration test
flushes anyway.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from sqlalchemy import make_url, text

from benchmarks import scale_soak
from rewards import db
from rewards import settings as settings_module
from tests.support.invariants import assert_invariants

PARTNERS = 2_000
BATCH_SIZE = 20


def _on_scale_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture
def target() -> Iterator[scale_soak.Target]:
    """The soak's database next to the suite's, reached as the suite's roles reach theirs; dropped after."""
    admin_url = os.environ["REWARDS_TEST_ADMIN_DATABASE_URL"]
    name = f"{make_url(admin_url).database}_scale"
    current = settings_module.get()
    target = scale_soak.Target(_on_scale_database(admin_url, name),
                               _on_scale_database(current.database_url, name),
                               _on_scale_database(current.retention_database_url, name), current.redis_url)
    assert target.database != make_url(current.database_url).database
    yield target
    scale_soak.drop_database(target.admin_url)


def soak(target: scale_soak.Target, migrate_from: str | None = None) -> scale_soak.Run:
    # Small batches: at this size the writer must still be writing while the migrations run.
    return scale_soak.run_soak(target, PARTNERS, settings_module.get(), lambda line: None,
                               migrate_from=migrate_from, batch_size=BATCH_SIZE)


def assert_sound(target: scale_soak.Target, run: scale_soak.Run) -> None:
    """Nothing lost or paid twice, the suite's invariants on the soak's database, every job caught up."""
    assert run.problems == []
    assert run.expected_checkins == PARTNERS * scale_soak.WAVE_PERCENT // 100
    assert run.checkins_applied == run.expected_checkins
    engine = db.make_engine(target.admin_url)
    try:
        with engine.connect() as conn:
            assert_invariants(conn)
            day_checkins = conn.execute(text("SELECT COUNT(*) FROM checkin WHERE day = :day"),
                                        {"day": scale_soak.DAY}).scalar_one()
    finally:
        engine.dispose()
    assert day_checkins == run.expected_checkins
    assert run.full.partners == PARTNERS and run.full.mismatches == 0
    for job in run.beat.jobs.values():
        assert sum(tick.examined for tick in job.ticks) > 0, f"{job.name} had nothing to do all day"
        assert job.keeps_up(job.ticks), f"{job.name} needed {max(t.runs for t in job.ticks)} runs at a tick " \
                                        f"or {job.busiest.took_s:.1f} s"
        assert all(tick.left_when_done == 0 for tick in job.ticks), f"{job.name} left work when it said done"


def test_a_day_at_two_thousand_partners_applies_every_check_in_once_and_every_job_catches_up(target):
    scale_soak.recreate_database(target.admin_url)
    db.upgrade("head", target.admin_url)
    run = soak(target)
    assert_sound(target, run)
    _, all_bytes, kept_bytes = scale_soak.wave_growth(run)
    assert all_bytes > kept_bytes > 0
    assert run.boards.members > PARTNERS and run.boards.bytes > 0
    changed = {name: sum(tick.changed for tick in job.ticks) for name, job in run.beat.jobs.items()}
    assert changed["expire_streaks"] > 0 and changed["streak_risk"] > 0 and changed["relay_outbox"] > 0


def test_migrations_to_head_run_while_a_writer_applies_check_ins(target):
    # 0009 is the first revision the worker's role can write at: every later one runs under the writer.
    start = "0009"
    assert scale_soak.revisions_after(target.admin_url, start), "no revision after 0009 to migrate through"
    run = soak(target, migrate_from=start)
    assert_sound(target, run)
    assert [step.revision for step in run.migration.steps] == scale_soak.revisions_after(target.admin_url, start)
    assert all(run.migration.during(step) for step in run.migration.steps), "a migration ran with no writer"
    assert run.migration.unwritten_s == 0 and 0 < run.writer.applied < run.checkins_applied
