"""A job that fails while PostgreSQL is down is kept as a dead letter, then moved to job_failure.

`record_failure_anywhere(..., in_database=True)` writes the failure record in
job_failure; when PostgreSQL cannot take it, the record goes to the Redis
dead-letter hash instead, and the relay moves it once PostgreSQL answers
(DESIGN.md section 6: a failure record must not depend on the component
that failed). Here PostgreSQL is really down: a throwaway server of the
test's own (chaos.servers.Postgres) is stopped, never the suite's.

Every job opens its transaction before its body can fail, so with the
database stopped a job fails the way the failure model allows: retried with
backoff over its horizon (three seconds here), then acknowledged as failed.
The test shows each step: the retries happened and were bounded, the record
exists as a dead letter by the time the message is acknowledged, nothing
was applied, and after PostgreSQL is started again the maintenance relay,
run by the same worker, moves the record into job_failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from sqlalchemy import create_engine, text

from chaos.servers import Postgres
from rewards import contract, deadletters
from tests.support.processes import REPO_ROOT, WorkerProcess, send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

PARTNER_ID = 7401
FIRST_DAY = "2026-01-05T12:00:00+00:00"
FAILED_DAY = "2026-01-06T12:00:00+00:00"
# The worker logs in as the suite's least-privileged role, a member of
# migration 0009's rewards_worker group, as it does on the shared server.
WORKER_ROLE = "rewards_test_worker"
LIMITS_ENV = {
    "REWARDS_RETRY_HORIZON_S": "3",
    "REWARDS_RETRY_BACKOFF_S_MAX": "1",
    "REWARDS_CONNECT_TIMEOUT_S": "1",
    "REWARDS_TASK_TIME_LIMIT_S": "5",
    "REWARDS_RELAY_BUDGET_S": "1",
    "REWARDS_WEBHOOK_TIMEOUT_S": "1",
}


@pytest.fixture
def own_postgres() -> Iterator[Postgres]:
    """A migrated PostgreSQL of the test's own, with the worker's login role."""
    # Outside pytest's tmp_path: PostgreSQL runs as `postgres`, which may not
    # enter pytest's root-only folders.
    folder = Path(tempfile.mkdtemp(prefix="rewards-pg-down-"))
    folder.chmod(0o755)
    server = Postgres(folder)
    try:
        server.init()
        migrated = subprocess.run([sys.executable, "-m", "rewards.cli", "db", "upgrade"], cwd=REPO_ROOT,
                                  env=os.environ | {"REWARDS_DATABASE_URL": server.url},
                                  capture_output=True, text=True, timeout=120)
        assert migrated.returncode == 0, migrated.stderr
        owner = create_engine(server.url)
        with owner.begin() as conn:
            conn.execute(text(f"CREATE ROLE {WORKER_ROLE} LOGIN"))
            conn.execute(text(f"GRANT rewards_worker TO {WORKER_ROLE}"))
        owner.dispose()
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(folder, ignore_errors=True)


def count_rows(server: Postgres, statement: str, **params) -> int:
    engine = create_engine(server.url)
    try:
        with engine.connect() as conn:
            return conn.execute(text(statement), params).scalar_one()
    finally:
        engine.dispose()


def log_lines(worker: WorkerProcess, event: str, job_id: str) -> list[str]:
    lines = worker.log_path.read_text(errors="replace").splitlines()
    return [line for line in lines if f"event={event} " in line and job_id in line]


def test_a_job_that_fails_while_postgresql_is_down_is_recorded_and_moved_once_it_is_back(
        own_postgres, system_broker_url, tmp_path):
    worker_url = own_postgres.url.replace("postgres@", f"{WORKER_ROLE}@", 1)
    env = LIMITS_ENV | {"REWARDS_DATABASE_URL": worker_url, "CELERY_BROKER_URL": system_broker_url,
                        "REWARDS_DEAD_LETTER_URL": system_broker_url}
    broker = redis.Redis.from_url(system_broker_url)
    worker = start_worker_process("database-down", "checkins,maintenance", env, tmp_path)
    try:
        send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID, "occurred_at": FIRST_DAY})], env)
        wait_until(lambda: count_rows(own_postgres, "SELECT COUNT(*) FROM checkin") == 1, 60,
                   "the worker to apply a check-in while PostgreSQL is up", (worker,))

        own_postgres.stop()
        [job_id] = send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID, "occurred_at": FAILED_DAY})], env)
        wait_until(lambda: log_lines(worker, "job_failure.dead_letter", job_id), 60,
                   "the worker to give up on PostgreSQL for the failure record", (worker,))
        wait_until(lambda: broker.llen("checkins") == 0 and broker.hlen("unacked") == 0, 60,
                   "the failed job's message to be acknowledged", (worker,))
        # Acknowledged, so recorded: acks come after the job, and the job records first.
        letters = [letter for letter in deadletters.pending(system_broker_url) if letter.job_id == job_id]
        assert len(letters) == 1, f"no dead letter for {job_id}:\n{worker.log_tail()}"
        assert letters[0].reason == "retries_exhausted" and letters[0].payload["partner_id"] == PARTNER_ID
        retries = log_lines(worker, "job.retry", job_id)
        assert 1 <= len(retries) <= 10, f"{len(retries)} retries for a three-second horizon"

        own_postgres.start()
        send_jobs([(contract.MAINTENANCE_RELAY_OUTBOX, {})], env)
        wait_until(lambda: count_rows(own_postgres, "SELECT COUNT(*) FROM job_failure WHERE job_id = :id",
                                      id=job_id) == 1, 60, "the relay to move the dead letter", (worker,))
    finally:
        worker.kill()
    assert [letter for letter in deadletters.pending(system_broker_url) if letter.job_id == job_id] == []
    assert count_rows(own_postgres, "SELECT COUNT(*) FROM job_failure WHERE job_id = :id AND "
                      "reason = 'retries_exhausted' AND task_name = 'rewards.checkin'", id=job_id) == 1
    # Failed, not applied: the partner keeps the first day alone.
    assert count_rows(own_postgres, "SELECT COUNT(*) FROM checkin") == 1
    assert count_rows(own_postgres, "SELECT xp FROM partner WHERE id = :id", id=PARTNER_ID) == 10
