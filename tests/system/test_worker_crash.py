"""A worker killed with SIGKILL while holding unacknowledged jobs loses none and pays none twice.

The workers here consume a Redis database of their own (system_broker_url),
or a RabbitMQ vhost of their own, so no other worker of the suite can apply
the jobs in their place. The time from the kill to the last job applied by
the next worker is printed (pytest -s, or -rA).
"""

import os
import random
import signal
import subprocess
import time

import pytest
import redis
from celery.result import AsyncResult
from kombu import Connection
from sqlalchemy import text

from rewards import contract, db
from rewards.client import RewardsClient
from tests.support.processes import send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

# Five consecutive days for each of 120 partners, shuffled: redelivery after
# the kill reorders them further, and late days converge (DESIGN.md 6a).
DAYS = 5
PARTNERS = range(5001, 5121)
JOBS = DAYS * len(PARTNERS)
# A short visibility timeout so Redis hands the dead worker's messages to the
# next worker within seconds; job, retry and relay limits stay below it, as
# the settings check demands.
VISIBILITY_TIMEOUT_S = 5
LIMITS_ENV = {
    "CELERY_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
    "REWARDS_TASK_TIME_LIMIT_S": "3",
    "REWARDS_RETRY_BACKOFF_S_MAX": "1",
    "REWARDS_RELAY_BUDGET_S": "1",
    "REWARDS_WEBHOOK_TIMEOUT_S": "1",
    "REWARDS_CONNECT_TIMEOUT_S": "1",
    # Jobs of one partner wait on each other's row lock: give them room, and
    # retry a lock timeout for a minute rather than the suite's one second.
    "REWARDS_LOCK_TIMEOUT_MS": "2000",
    "REWARDS_RETRY_HORIZON_S": "60",
}


def shuffled_checkins() -> list[tuple[str, dict]]:
    jobs = [("rewards.checkin", {"partner_id": partner_id, "occurred_at": f"2026-09-0{day + 1}T12:00:00+00:00"})
            for partner_id in PARTNERS for day in range(DAYS)]
    random.Random(5).shuffle(jobs)
    return jobs


def applied_checkins() -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar()


class RedisBroker:
    def __init__(self, url: str):
        self.url, self.client = url, redis.Redis.from_url(url)

    def unacknowledged(self) -> int:
        return self.client.hlen("unacked")

    def queued(self) -> int:
        return self.client.llen("checkins")


class RabbitBroker:
    def __init__(self, url: str):
        self.url, self.vhost = url, url.rsplit("/", 1)[1]
        # The jobs are queued before any worker runs, and producers declare
        # nothing: the topology is the broker's first (as definitions give it).
        with Connection(url) as connection:
            for queue in contract.kombu_queues():
                queue(connection.default_channel).declare()
        subprocess.run(["rabbitmqctl", "-q", "purge_queue", "-p", self.vhost, "checkins"], capture_output=True)

    def _count(self, column: str) -> int:
        out = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", self.vhost, "name", column],
                             capture_output=True, text=True, check=True).stdout
        return sum(int(n) for name, n in (line.split() for line in out.splitlines() if line.strip())
                   if name == "checkins" and n.isdigit())

    def unacknowledged(self) -> int:
        return self._count("messages_unacknowledged")

    def queued(self) -> int:
        return self._count("messages_ready")


@pytest.fixture(params=["redis", "amqp"])
def broker(request, system_broker_url):
    if request.param == "redis":
        return RedisBroker(system_broker_url)
    return RabbitBroker(os.environ.get("REWARDS_SYSTEM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/rewards_test"))


def idle_for(broker, quiet_s: float):
    """A condition: the broker has held nothing (queued or unacknowledged) for `quiet_s`."""
    last_busy = [time.monotonic()]

    def idle() -> bool:
        if broker.queued() or broker.unacknowledged():
            last_busy[0] = time.monotonic()
        return time.monotonic() - last_busy[0] >= quiet_s
    return idle


def resend_lost(broker, jobs, job_ids, client, worker_env) -> int:
    """The producer's recovery (README, "A job the Redis broker lost"): a job with no result while
    the broker holds nothing is sent again under its id; its key makes a second run a duplicate."""
    lost = [(job, job_id) for job, job_id in zip(jobs, job_ids) if not AsyncResult(job_id, app=client.app).ready()]
    # RabbitMQ acknowledgements leave no such gap: there, a job without a result is a defect.
    assert not lost or isinstance(broker, RedisBroker), f"RabbitMQ lost {len(lost)} job(s)"
    if lost:
        send_jobs([job for job, _ in lost], worker_env, [job_id for _, job_id in lost])
    return len(lost)


def test_a_killed_workers_jobs_are_applied_exactly_once_by_the_next_worker(clean_state, broker, tmp_path):
    worker_env = LIMITS_ENV | {"CELERY_BROKER_URL": broker.url}
    jobs = shuffled_checkins()
    job_ids = send_jobs(jobs, worker_env)
    client = RewardsClient()

    first = start_worker_process("doomed", "checkins", worker_env, tmp_path)
    try:
        wait_until(lambda: applied_checkins() >= 100, 60, "the first worker to apply 100 check-ins", (first,))
        held = broker.unacknowledged()
    finally:
        first.kill(signal.SIGKILL)
    killed_at = time.monotonic()
    applied_before_kill = applied_checkins()
    assert held > 0, "the worker held no unacknowledged message when it was killed"
    assert applied_before_kill < JOBS

    second = start_worker_process("survivor", "checkins", worker_env, tmp_path)
    try:
        progress = (lambda: f"{applied_checkins()} applied, {broker.unacknowledged()} unacknowledged, "
                            f"{broker.queued()} queued")
        idle = idle_for(broker, VISIBILITY_TIMEOUT_S * 3)
        wait_until(lambda: applied_checkins() == JOBS or idle(), 120, f"all {JOBS} check-ins to be applied",
                   (second,), progress=progress)
        resent = resend_lost(broker, jobs, job_ids, client, worker_env)
        wait_until(lambda: applied_checkins() == JOBS, 60, f"all {JOBS} check-ins to be applied after "
                   f"{resent} were sent again", (second,), progress=progress)
        print(f"\n{type(broker).__name__}: {time.monotonic() - killed_at:.1f} s from the SIGKILL to every job "
              f"applied by the next worker (visibility timeout {VISIBILITY_TIMEOUT_S} s on Redis); "
              f"{resent} lost by the broker and sent again")
        results = [AsyncResult(job_id, app=client.app).get(timeout=60) for job_id in job_ids]
        wait_until(lambda: broker.unacknowledged() == 0, 30, "every message to be acknowledged", (second,))
    finally:
        second.kill(signal.SIGTERM)
        client.close()

    assert {r["status"] for r in results} <= {"applied", "duplicate"}
    with db.get_engine().connect() as conn:
        partners = conn.execute(text("SELECT COUNT(*), MIN(xp), MAX(xp), MIN(checkin_streak), MAX(checkin_streak) "
                                     "FROM partner")).one()
        assert tuple(partners) == (len(PARTNERS), 10 * DAYS, 10 * DAYS, DAYS, DAYS)
        assert conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar() == JOBS
        assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0
