"""A scheduled maintenance run that stops at its batch limit sends the next run at once.

Here a run may reset at most two streaks (one batch of two), and seven are
due: beat's one run (no `now`) is followed by back-to-back runs until every
lost streak is reset, well inside the hour beat would otherwise take to
send the next one. An operator's run with an explicit `now` does not carry
on: it is the operator's to repeat.
"""

from __future__ import annotations

import re

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import text

from rewards import contract, db
from rewards.models import utcnow
from tests.support.processes import WorkerProcess, send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

PARTNERS = range(7601, 7608)
LIMITS_ENV = {"REWARDS_MAINTENANCE_BATCH_SIZE": "2", "REWARDS_MAINTENANCE_MAX_BATCHES": "1"}


@pytest.fixture
def worker(system_broker_url, clean_state, tmp_path) -> Iterator[tuple[WorkerProcess, dict[str, str]]]:
    env = {"CELERY_BROKER_URL": system_broker_url, **LIMITS_ENV}
    # INFO: the runs' own log lines are what the test reads.
    process = start_worker_process("carry-on", ",".join(contract.QUEUES), env, tmp_path,
                                   options=("--loglevel=INFO",))
    try:
        yield process, env
    finally:
        process.kill()


def live_streaks() -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM partner WHERE id BETWEEN :a AND :b AND checkin_streak > 0"),
                            {"a": PARTNERS[0], "b": PARTNERS[-1]}).scalar_one()


def continued_runs(process: WorkerProcess) -> int:
    return process.log_path.read_text().count("maintenance.continued")


def succeeded(process: WorkerProcess, task_name: str) -> bool:
    return re.search(rf"{re.escape(task_name)}\[[^\]]+\] succeeded in", process.log_path.read_text()) is not None


def checkins_three_days_ago() -> list[tuple[str, dict]]:
    three_days_ago = (utcnow() - timedelta(days=3)).isoformat()
    return [(contract.CHECKIN, {"partner_id": partner_id, "occurred_at": three_days_ago}) for partner_id in PARTNERS]


def test_a_scheduled_run_with_work_left_is_followed_at_once_until_every_lost_streak_is_reset(worker):
    process, env = worker
    send_jobs(checkins_three_days_ago(), env)
    wait_until(lambda: live_streaks() == len(PARTNERS), 60, "the check-ins", (process,))

    send_jobs([(contract.MAINTENANCE_EXPIRE_STREAKS, {})], env)
    wait_until(lambda: live_streaks() == 0, 60, "every lost streak reset", (process,),
               progress=lambda: f"{live_streaks()} live, {continued_runs(process)} runs continued")
    # Seven streaks at two a run: the first run and three that carried on reset them.
    assert continued_runs(process) >= 3


def test_an_operators_run_with_an_explicit_now_does_not_carry_on(worker):
    process, env = worker
    send_jobs(checkins_three_days_ago(), env)
    wait_until(lambda: live_streaks() == len(PARTNERS), 60, "the check-ins", (process,))

    send_jobs([(contract.MAINTENANCE_EXPIRE_STREAKS, {"now": utcnow().isoformat()})], env)
    wait_until(lambda: live_streaks() == len(PARTNERS) - 2, 60, "one run's two resets", (process,))
    # Celery logs the success after the task returned, so after any carried-on run was sent.
    wait_until(lambda: succeeded(process, contract.MAINTENANCE_EXPIRE_STREAKS), 30, "the run's success",
               (process,))
    assert continued_runs(process) == 0 and live_streaks() == len(PARTNERS) - 2
