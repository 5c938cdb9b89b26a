"""A worker killed with SIGKILL while holding unacknowledged jobs loses none and pays none twice."""

import signal
import time

import pytest
import redis
from sqlalchemy import text

from rewards import db
from rewards import settings as settings_module
from rewards.client import RewardsClient
from tests.system.conftest import kill_group, start_worker_process, wait_until

pytestmark = pytest.mark.system

JOBS = 600
PARTNERS = range(5001, 5001 + JOBS)
# A short visibility timeout so Redis hands the dead worker's messages to the
# next worker within seconds; job and retry limits stay below it.
VISIBILITY_TIMEOUT_S = 4
WORKER_ENV = {
    "CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    "REWARDS_TASK_TIME_LIMIT_S": "3",
    "REWARDS_RETRY_BACKOFF_S_MAX": "1",
}


def applied_checkins() -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar()


def unacked_messages() -> int:
    return redis.Redis.from_url(settings_module.get().broker_url).hlen("unacked")


def test_a_killed_workers_jobs_are_applied_exactly_once_by_the_next_worker(clean_state):
    client = RewardsClient()
    sent = [client.checkin(pid, occurred_at="2026-09-01T12:00:00+00:00") for pid in PARTNERS]

    first = start_worker_process("doomed", "checkins", WORKER_ENV)
    try:
        wait_until(lambda: applied_checkins() >= 100, 60, "the first worker to apply 100 check-ins")
        held = unacked_messages()
    finally:
        kill_group(first, signal.SIGKILL)
    applied_before_kill = applied_checkins()
    assert held > 0, "the worker held no unacknowledged message when it was killed"
    assert applied_before_kill < JOBS

    time.sleep(VISIBILITY_TIMEOUT_S + 1)
    second = start_worker_process("survivor", "checkins", WORKER_ENV)
    try:
        wait_until(lambda: applied_checkins() == JOBS, 120, f"all {JOBS} check-ins to be applied")
        results = [result.get(timeout=60) for result in sent]
        wait_until(lambda: unacked_messages() == 0, 30, "every message to be acknowledged")
    finally:
        kill_group(second, signal.SIGTERM)
        client.close()

    assert {r["status"] for r in results} <= {"applied", "duplicate"}
    with db.get_engine().connect() as conn:
        assert conn.execute(text("SELECT COUNT(*), SUM(xp) FROM partner")).one() == (JOBS, 10 * JOBS)
        assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger")).scalar() == JOBS
        assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0
