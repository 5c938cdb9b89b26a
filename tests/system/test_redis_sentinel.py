"""Results and dead letters on a Redis that Sentinel fails over: the worker follows the promoted replica.

A Redis master, two replicas and three Sentinels of the test's own
(chaos/ha.py). A real worker stores results at a sentinel:// URL and keeps
dead letters at another; the broker is a Redis database no other worker of
the suite consumes. A check-in is held on its partner's row lock while the
master is SIGKILLed and Sentinel promotes a replica; released, it commits and
its result lands on the new master, without a worker restart. A dead letter
must reach a replica before it counts as kept (WAIT): with both replicas
stopped, keeping one fails instead of trusting the master alone.
"""

import json
import signal
from datetime import datetime, timezone

import pytest
import redis
from sqlalchemy import text

from chaos.ha import SentinelRedis
from rewards import db, deadletters
from tests.support.database import admin_transaction
from tests.support.processes import send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

PARTNER_ID = 7401


@pytest.fixture
def sentinel_redis(tmp_path):
    group = SentinelRedis(tmp_path)
    try:
        group.start()
        yield group
    finally:
        group.cleanup()


def count(statement: str) -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text(statement)).scalar_one()


def waiting_on_a_lock() -> int:
    return count("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")


def stored_result(port: int, job_id: str) -> dict | None:
    value = redis.Redis(port=port, db=1).get(f"celery-task-meta-{job_id}")
    return json.loads(value) if value else None


def test_a_job_in_flight_when_the_result_master_dies_stores_its_result_on_the_promoted_replica(
        sentinel_redis, system_broker_url, clean_state, tmp_path):
    env = {"CELERY_BROKER_URL": system_broker_url, "CELERY_RESULT_BACKEND": sentinel_redis.url(1),
           "REWARDS_DEAD_LETTER_URL": sentinel_redis.url(2), "REWARDS_REDIS_SENTINEL_MASTER": "rewards",
           "REWARDS_LOCK_TIMEOUT_MS": "30000"}
    first_master = sentinel_redis.master_port()
    worker = start_worker_process("sentinel-results", "checkins", env, tmp_path)
    try:
        [first] = send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID,
                                                  "occurred_at": "2026-01-04T12:00:00+00:00"})], env)
        wait_until(lambda: stored_result(first_master, first) is not None, 60,
                   "the first result on the first master", (worker,))
        with admin_transaction() as conn:
            conn.execute(text("SELECT 1 FROM partner WHERE id = :id FOR UPDATE"), {"id": PARTNER_ID})
            [held] = send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID,
                                                     "occurred_at": "2026-01-05T12:00:00+00:00"})], env)
            wait_until(lambda: waiting_on_a_lock() == 1, 60, "the job to wait on its partner", (worker,))
            sentinel_redis.kill(first_master)
            new_master = sentinel_redis.wait_for_master_other_than(first_master, timeout_s=60)
        wait_until(lambda: stored_result(new_master, held) is not None, 60,
                   "the held job's result on the promoted replica", (worker,))
    finally:
        worker.kill()
    result = stored_result(new_master, held)
    assert (result["status"], result["result"]["status"]) == ("SUCCESS", "applied"), result
    assert count("SELECT COUNT(*) FROM checkin") == 2
    assert count("SELECT COUNT(*) FROM job_failure") == 0, worker.log_tail()


def test_a_dead_letter_counts_as_kept_only_once_a_replica_has_it(sentinel_redis):
    url = sentinel_redis.url(2)
    letter = deadletters.DeadLetter.new(task_name="rewards.checkin", job_id="job-1", payload={"partner_id": 1},
                                        reason="error", error="boom", now=datetime.now(timezone.utc))
    deadletters.push(url, letter)
    assert [kept.id for kept in deadletters.pending(url)] == [letter.id]
    for port in sentinel_redis.ports[1:]:
        sentinel_redis.signal(port, signal.SIGSTOP)
    try:
        with pytest.raises(redis.RedisError, match="on the master only"):
            deadletters.push(url, deadletters.DeadLetter.new(
                task_name="rewards.checkin", job_id="job-2", payload={}, reason="error", error="boom",
                now=datetime.now(timezone.utc)))
    finally:
        for port in sentinel_redis.ports[1:]:
            sentinel_redis.signal(port, signal.SIGCONT)
