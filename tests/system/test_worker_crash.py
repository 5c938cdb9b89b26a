"""A worker killed with SIGKILL while holding unacknowledged jobs loses none and pays none twice.

The workers here consume a Redis database of their own (system_broker_url),
or a RabbitMQ vhost of their own, so no other worker of the suite can apply
the jobs in their place. The test counts what the broker held for the
killed worker (Redis: the `unacked` hash; RabbitMQ: the deliveries the node
requeued as redelivered when the worker's connection died) and asserts the
next worker ran every one of them under its first id: none is re-sent.

On Redis a message taken by BRPOP and not yet written to `unacked` dies with
the worker (DESIGN.md section 10): the producer sends such a job again under
its id. Those re-sends are counted on a line of their own and bounded by the
worker's prefetch window; on RabbitMQ there must be none. The time from the
kill to the last job applied by the next worker is printed (pytest -s, or -rA).
"""

import os
import random
import re
import signal
import time
from collections import Counter

import pytest
from celery.result import AsyncResult
from kombu import Connection
from sqlalchemy import text

import celeryconfig
from rewards import contract, db
from rewards.client import RewardsClient
from tests.support.brokers import RabbitCheckins, RedisCheckins
from tests.support.processes import WorkerProcess, send_jobs, start_worker_process, wait_until

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
# Celery logs each message a worker takes at INFO: the evidence of who held what.
WORKER_OPTIONS = ("--loglevel=INFO",)
# The most messages a worker takes ahead of running them: -c 2 (start_worker_process)
# times the prefetch multiplier. A Redis broker loses at most what is in the
# consumer's hands between BRPOP and `unacked`, far fewer than this.
PREFETCH_WINDOW = 2 * celeryconfig.worker_prefetch_multiplier
RECEIVED = re.compile(r"Task rewards\.checkin\[([0-9a-f-]{36})\] received")
# The line workers/base.py logs once a job ran (rewards.logs).
RAN = re.compile(r"event=job\.(\w+) task=rewards\.checkin job_id=([0-9a-f-]{36})")


def shuffled_checkins() -> list[tuple[str, dict]]:
    jobs = [("rewards.checkin", {"partner_id": partner_id, "occurred_at": f"2026-09-0{day + 1}T12:00:00+00:00"})
            for partner_id in PARTNERS for day in range(DAYS)]
    random.Random(5).shuffle(jobs)
    return jobs


def applied_checkins() -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar()


def received_ids(worker: WorkerProcess) -> set[str]:
    """The job ids the worker's log says it took from the broker."""
    return set(RECEIVED.findall(worker.log_path.read_text(errors="replace")))


class RedisBroker(RedisCheckins):
    def held_job_ids(self) -> set[str]:
        """Read after the kill, before any other worker runs: the `unacked` hash is what the dead worker held."""
        return self.unacknowledged_ids()


class RabbitBroker(RabbitCheckins):
    def held_job_ids(self) -> set[str]:
        """Read after the kill, before any other worker runs: the deliveries the node requeued as redelivered.

        When the dead worker's connection closes, RabbitMQ puts back every
        message it held unacknowledged and marks it redelivered; no other
        message of the queue was ever delivered. Each is taken here without
        acknowledging it, and closing the connection puts all of them back.
        """
        wait_until(lambda: self.unacknowledged() == 0, 30, "RabbitMQ to requeue the dead worker's deliveries")
        held = set()
        with Connection(self.url) as connection:
            queue = next(q for q in contract.kombu_queues() if q.name == "checkins")(connection.default_channel)
            while (message := queue.get(no_ack=False)) is not None:
                if message.delivery_info["redelivered"]:
                    held.add(message.headers["id"])
        return held


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


def kill_holding_jobs(broker, worker_env: dict, tmp_path) -> tuple[WorkerProcess, set[str]]:
    """A worker SIGKILLed while it applies check-ins; returns it and the job ids the broker held for it."""
    doomed = start_worker_process("doomed", "checkins", worker_env, tmp_path, WORKER_OPTIONS)
    try:
        wait_until(lambda: applied_checkins() >= 100, 60, "the first worker to apply 100 check-ins", (doomed,))
    finally:
        doomed.kill(signal.SIGKILL)
    held = broker.held_job_ids()
    # The fault's evidence: the killed worker held jobs, and its own log says it had taken some of
    # them. Not necessarily all: the broker counts a message as delivered once it is on its way,
    # and one still in the dead worker's socket buffer was never logged.
    assert held, f"the worker held no unacknowledged job when it was killed:\n{doomed.log_tail()}"
    assert held & received_ids(doomed), f"none of the jobs the broker held was taken by the worker:\n" \
                                        f"{doomed.log_tail()}"
    assert applied_checkins() < JOBS
    return doomed, held


def unanswered(job_ids: list[str], client) -> list[str]:
    return [job_id for job_id in job_ids if not AsyncResult(job_id, app=client.app).ready()]


def resend_lost(broker, jobs, job_ids, held: set[str], client, worker_env) -> list[str]:
    """The producer's recovery (docs/reliability.md, "A job the Redis broker lost"): a job with no result while
    the broker holds nothing is sent again under its id; returns the ids sent again."""
    lost = unanswered(job_ids, client)
    assert not held & set(lost), f"jobs the killed worker held were never run: {sorted(held & set(lost))}"
    # RabbitMQ acknowledgements leave no gap: there, a job without a result is a defect.
    assert not lost or isinstance(broker, RedisBroker), f"RabbitMQ lost {len(lost)} job(s): {lost[:5]}"
    assert len(lost) <= PREFETCH_WINDOW, f"Redis lost {len(lost)} jobs, more than a prefetch window"
    if lost:
        send_jobs([job for job, job_id in zip(jobs, job_ids) if job_id in lost], worker_env, lost)
    return lost


def ran_ids(worker: WorkerProcess) -> dict[str, str]:
    """Job id -> the outcome the worker logged for it after running it (applied, duplicate...)."""
    return {job_id: status for status, job_id in RAN.findall(worker.log_path.read_text(errors="replace"))}


def assert_survivor_ran_held(held: set[str], survivor: WorkerProcess, client) -> Counter:
    """Every job the broker held at the kill was redelivered to the survivor and ran there, under its own id.

    Returns how the survivor's runs came out: `duplicate` for a job the killed
    worker had committed but not yet acknowledged.
    """
    redelivered = held & received_ids(survivor)
    assert redelivered == held, (f"held jobs the survivor never took: {sorted(held - redelivered)[:5]}"
                                 f"\n{survivor.log_tail()}")
    ran = ran_ids(survivor)
    assert held <= ran.keys(), f"held jobs the survivor never ran: {sorted(held - ran.keys())[:5]}"
    # The result is the last run's: a job the killed worker had committed but not acknowledged
    # is a duplicate of itself there (its single payment is checked on the ledger).
    assert {AsyncResult(job_id, app=client.app).get(timeout=60)["status"] for job_id in held} <= \
        {"applied", "duplicate"}
    return Counter(ran[job_id] for job_id in held)


def test_a_killed_workers_jobs_are_applied_exactly_once_by_the_next_worker(clean_state, broker, tmp_path):
    worker_env = LIMITS_ENV | {"CELERY_BROKER_URL": broker.url}
    jobs = shuffled_checkins()
    job_ids = send_jobs(jobs, worker_env)
    client = RewardsClient()

    doomed, held = kill_holding_jobs(broker, worker_env, tmp_path)
    killed_at = time.monotonic()
    survivor = start_worker_process("survivor", "checkins", worker_env, tmp_path, WORKER_OPTIONS)
    try:
        progress = (lambda: f"{applied_checkins()} applied, {broker.unacknowledged()} unacknowledged, "
                            f"{broker.queued()} queued")
        idle = idle_for(broker, VISIBILITY_TIMEOUT_S * 3)
        wait_until(lambda: not unanswered(job_ids, client) or idle(), 120, f"all {JOBS} jobs to be answered",
                   (survivor,), progress=progress)
        resent = resend_lost(broker, jobs, job_ids, held, client, worker_env)
        wait_until(lambda: applied_checkins() == JOBS, 60, f"all {JOBS} check-ins to be applied after "
                   f"{len(resent)} were sent again", (survivor,), progress=progress)
        results = dict(zip(job_ids, (AsyncResult(job_id, app=client.app).get(timeout=60) for job_id in job_ids)))
        survivor_runs = assert_survivor_ran_held(held, survivor, client)
        wait_until(lambda: broker.unacknowledged() == 0, 30, "every message to be acknowledged", (survivor,))
    finally:
        survivor.kill(signal.SIGTERM)
        client.close()

    recovered_applied = sum(results[job_id]["status"] == "applied" for job_id in resent)
    print(f"\n{type(broker).__name__}: {time.monotonic() - killed_at:.1f} s from the SIGKILL to every job "
          f"applied by the next worker (visibility timeout {VISIBILITY_TIMEOUT_S} s on Redis)\n"
          f"  held by the killed worker, run by the next one: {len(held)} (its runs: {dict(survivor_runs)})\n"
          f"  lost by the broker, recovered by the producer: {len(resent)} ({recovered_applied} applied)")
    assert {r["status"] for r in results.values()} <= {"applied", "duplicate"}
    assert_applied_exactly_once()


def assert_applied_exactly_once() -> None:
    with db.get_engine().connect() as conn:
        partners = conn.execute(text("SELECT COUNT(*), MIN(xp), MAX(xp), MIN(checkin_streak), MAX(checkin_streak) "
                                     "FROM partner")).one()
        assert tuple(partners) == (len(PARTNERS), 10 * DAYS, 10 * DAYS, DAYS, DAYS)
        assert conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar() == JOBS
        assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0
