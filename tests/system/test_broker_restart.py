"""A worker keeps running through a broker restart, and every job is applied exactly once.

One worker process (prefork ×2) consumes `checkins` while two faults hit
its broker, each with a job in flight: one partner's check-in waits on that
partner's row, which the test holds locked, so the job stays running and
unacknowledged through both faults.

- The first fault comes while check-ins are still queued (under load).
- The second comes once the queue is empty, the worker waiting in BRPOP
  with only the held job unacknowledged: on Redis that is when kombu's
  restore of unacknowledged messages met a transport already detached from
  its connection and the worker exited (rewards/transport.py,
  `KeepsBrokerAddress`); without that guard this test fails every time.

Redis: a throwaway server of the test's own (chaos.servers.Redis,
append-only, its own port) is stopped and started again; the suite's shared
Redis is never touched. RabbitMQ: the machine has one shared node, and
stopping it (or `stop_app`) would take the broker away from every other
suite. The fault is `rabbitmqctl close_all_connections` on the test's own
vhost: the node closes the worker's connections as it does when it shuts
down, requeues what the worker held unacknowledged, and the worker must
notice, reconnect and consume again — the consumer's side of a node restart.

Afterwards the lock is released and more check-ins are sent: they are
applied only if the worker re-established its connection.

On Redis a message BRPOP took off the queue and the worker had not yet
recorded as unacknowledged dies with the connection (docs/reliability.md,
"A job the Redis broker lost"): a check-in of the load that is neither applied nor
held by the broker (queued or unacknowledged) for LOST_AFTER_S is sent
again under its id, as the producer would. At most one per fault; on
RabbitMQ none.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
import redis
from sqlalchemy import text

from chaos.servers import Redis
from rewards import db
from tests.support.brokers import RabbitCheckins, RedisCheckins
from tests.support.database import admin_transaction
from tests.support.processes import WorkerProcess, send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

HELD_PARTNER_ID = 8101
FIRST_LOAD = [("rewards.checkin", {"partner_id": partner_id, "occurred_at": "2026-09-01T12:00:00+00:00"})
              for partner_id in range(8200, 8600)]
SECOND_LOAD = [("rewards.checkin", {"partner_id": partner_id, "occurred_at": "2026-09-01T12:00:00+00:00"})
               for partner_id in range(8600, 8800)]
HELD_DAYS = ("2026-09-01T12:00:00+00:00", "2026-09-02T12:00:00+00:00")
# Every check-in of a partner's first six days pays 10 XP.
CHECKIN_XP = 10
# The held job waits on its partner's row for the whole test: its lock and
# statement timeouts and its time limit outlast both faults, and the
# visibility timeout (Redis) exceeds its longest hold, as the settings check demands.
LIMITS_ENV = {
    "REWARDS_LOCK_TIMEOUT_MS": "50000",
    "REWARDS_STATEMENT_TIMEOUT_MS": "55000",
    "REWARDS_TASK_TIME_LIMIT_S": "60",
    "REWARDS_RECONCILE_LAG_S": "60",
    "REWARDS_RETRY_BACKOFF_S_MAX": "1",
    "CELERY_VISIBILITY_TIMEOUT_S": "70",
}
CONNECTION_LOST = "Connection to broker lost"
# The longest wait for the worker to apply what it held at a fault: the
# visibility timeout above, plus room for one pool child (the other is held)
# working through the load on a busy 2-core machine.
DRAIN_S = 240
# How long a job of the load must be neither applied nor held by the broker
# to count as lost: far longer than the moment between BRPOP and `unacked`.
LOST_AFTER_S = 10


class RedisBroker(RedisCheckins):
    """A throwaway Redis the test stops and starts; nothing else uses it."""

    def __init__(self, folder):
        self.server = Redis(folder)
        self.server.start()
        super().__init__(self.server.url(0))

    def fault(self) -> None:
        self.server.stop()  # SIGTERM: the append-only file keeps what was queued
        time.sleep(2)
        self.server.start()

    def consuming(self) -> bool:
        """A client of the worker waits in BRPOP: it reconnected and asks for messages."""
        try:
            return any(client.get("cmd") == "brpop" for client in self.client.client_list())
        except redis.ConnectionError:
            return False

    def cleanup(self) -> None:
        self.server.cleanup()


class RabbitBroker(RabbitCheckins):
    """The suite's vhost on the shared node; the fault closes only that vhost's connections."""

    def fault(self) -> None:
        subprocess.run(["rabbitmqctl", "-q", "close_all_connections", "--vhost", self.vhost,
                        "broker restart (test_broker_restart)"], check=True, capture_output=True)

    def held_ids(self) -> None:
        """RabbitMQ loses no message: every job not yet applied is held by the node."""
        return None

    def consuming(self) -> bool:
        """The node lists a consumer on `checkins` again: the worker reconnected."""
        out = subprocess.run(["rabbitmqctl", "-q", "list_consumers", "-p", self.vhost, "queue_name"],
                             capture_output=True, text=True).stdout
        return "checkins" in out.split()


@pytest.fixture(params=["redis", "amqp"])
def broker(request, tmp_path) -> Iterator[RedisBroker | RabbitBroker]:
    if request.param == "redis":
        made = RedisBroker(tmp_path)
    else:
        made = RabbitBroker(os.environ.get("REWARDS_SYSTEM_AMQP_URL",
                                           "amqp://guest:guest@127.0.0.1:5672/rewards_test"))
    yield made
    if isinstance(made, RedisBroker):
        made.cleanup()  # the throwaway server; the RabbitMQ vhost is the suite's


def count(statement: str) -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text(statement)).scalar_one()


@contextmanager
def partner_row_held(partner_id: int) -> Iterator[None]:
    """The partner's row locked by the test: a job for that partner waits, running and unacknowledged."""
    with admin_transaction() as conn:
        conn.execute(text("SELECT 1 FROM partner WHERE id = :id FOR UPDATE"), {"id": partner_id})
        yield


def jobs_waiting_on_a_lock() -> int:
    return count("SELECT COUNT(*) FROM pg_stat_activity "
                 "WHERE datname = current_database() AND wait_event_type = 'Lock'")


def connection_losses(worker: WorkerProcess) -> int:
    return worker.log_path.read_text(errors="replace").count(CONNECTION_LOST)


def inject(broker, worker: WorkerProcess, what: str) -> None:
    """One fault with a job in flight; returns once the worker lost its connection and consumes again."""
    losses_before = connection_losses(worker)
    assert jobs_waiting_on_a_lock() >= 1, f"{what}: the held job is not running"
    broker.fault()
    wait_until(lambda: connection_losses(worker) > losses_before, 30,
               f"the worker to log the lost connection ({what})", (worker,))

    def consuming_again() -> bool:
        # A worker that gave up keeps its process while the held job runs: its log says so first.
        gave_up = "Unrecoverable error" in worker.log_path.read_text(errors="replace")
        assert not gave_up, f"the worker gave up ({what}):\n{worker.log_tail(80)}"
        return broker.consuming()
    wait_until(consuming_again, 60, f"the worker to consume again ({what})", (worker,))


def unapplied_ids(load: list[tuple[str, dict]], job_ids: list[str]) -> set[str]:
    """The ids of the load's check-ins (one partner each) that have no check-in row yet."""
    with db.get_engine().connect() as conn:
        applied = set(conn.execute(text("SELECT partner_id FROM checkin")).scalars())
    return {job_id for (_, job), job_id in zip(load, job_ids) if job["partner_id"] not in applied}


def applied_or_lost(broker, load: list[tuple[str, dict]], job_ids: list[str]) -> Callable[[], bool]:
    """A condition: every check-in of the load is applied, or (Redis) lost by the broker.

    A job counts as lost once it has been neither applied nor held by the
    broker for LOST_AFTER_S; the condition's `lost` attribute lists them.
    """
    outside_since: dict[str, float] = {}

    def settled() -> bool:
        missing, held, now = unapplied_ids(load, job_ids), broker.held_ids(), time.monotonic()
        if held is None:
            return not missing
        outside = missing - held
        for job_id in set(outside_since) - outside:
            del outside_since[job_id]
        for job_id in outside:
            outside_since.setdefault(job_id, now)
        settled.lost = sorted(outside)
        return all(job_id in outside and now - outside_since[job_id] >= LOST_AFTER_S for job_id in missing)
    settled.lost = []
    return settled


def resend_lost(lost: list[str], load: list[tuple[str, dict]], job_ids: list[str], env: dict) -> None:
    """The producer's recovery: a job the broker lost is sent again under its id."""
    assert len(lost) <= 1, f"the broker lost {len(lost)} jobs at one fault, more than one BRPOP's: {lost}"
    if lost:
        send_jobs([job for job, job_id in zip(load, job_ids) if job_id in lost], env, lost)


def test_a_worker_survives_broker_restarts_and_applies_every_job_once(clean_state, broker, tmp_path):
    env = LIMITS_ENV | {"CELERY_BROKER_URL": broker.url}
    if isinstance(broker, RedisBroker):
        env["REWARDS_DEAD_LETTER_URL"] = broker.server.url(1)
    worker = start_worker_process("restarted-broker", "checkins", env, tmp_path)
    pid = worker.process.pid
    try:
        # The worker declares the queues (a producer only publishes to them).
        wait_until(broker.consuming, 60, "the worker to consume", (worker,))
        send_jobs([("rewards.checkin", {"partner_id": HELD_PARTNER_ID, "occurred_at": HELD_DAYS[0]})], env)
        wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == 1, 60, "the first check-in", (worker,))
        with partner_row_held(HELD_PARTNER_ID):
            send_jobs([("rewards.checkin", {"partner_id": HELD_PARTNER_ID, "occurred_at": HELD_DAYS[1]})], env)
            wait_until(lambda: jobs_waiting_on_a_lock() >= 1, 60, "the held job to wait on its partner",
                       (worker,))
            first_ids = send_jobs(FIRST_LOAD, env)
            wait_until(lambda: count("SELECT COUNT(*) FROM checkin") > 1, 60, "the load to flow", (worker,))
            queued_at_fault = broker.queued()
            assert queued_at_fault > 0, "the first fault must come while check-ins are queued"
            inject(broker, worker, "under load")
            # Draining what was queued at the fault proves the worker consumes again.
            # What it had prefetched comes back by the restore, or on Redis at
            # worst after the visibility timeout: allow that and a slow machine.
            settled = applied_or_lost(broker, FIRST_LOAD, first_ids)
            wait_until(settled, DRAIN_S, "the load queued at the first fault to be applied", (worker,),
                       progress=lambda: f"{count('SELECT COUNT(*) FROM checkin')} applied, lost: {settled.lost}")
            resend_lost(settled.lost, FIRST_LOAD, first_ids, env)
            wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == 1 + len(FIRST_LOAD), DRAIN_S,
                       f"the load to be applied after {len(settled.lost)} sent again", (worker,),
                       progress=lambda: f"{count('SELECT COUNT(*) FROM checkin')} applied")
            wait_until(lambda: broker.queued() == 0, 30, "the queue to drain", (worker,))
            time.sleep(1)  # the worker is back waiting for messages, the held job still running
            inject(broker, worker, "queue empty, one job held")
        send_jobs(SECOND_LOAD, env)
        expected = len(HELD_DAYS) + len(FIRST_LOAD) + len(SECOND_LOAD)
        wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == expected, DRAIN_S,
                   "every check-in to be applied after the faults", (worker,),
                   progress=lambda: f"{count('SELECT COUNT(*) FROM checkin')} of {expected} applied")
        # A message whose ack the fault cut is redelivered (RabbitMQ at once, Redis after
        # the visibility timeout) and comes back a duplicate; wait until none is left.
        wait_until(lambda: broker.queued() == 0 and broker.unacknowledged() == 0, DRAIN_S,
                   "every message to be acknowledged", (worker,),
                   progress=lambda: f"{broker.queued()} queued, {broker.unacknowledged()} unacknowledged")
        assert worker.alive() and worker.process.pid == pid, worker.log_tail()
        log = worker.log_path.read_text(errors="replace")
    finally:
        worker.kill()
    assert "Unrecoverable error" not in log, log[-5000:]
    assert connection_losses(worker) >= 2
    assert_applied_exactly_once(expected)


def assert_applied_exactly_once(expected_checkins: int) -> None:
    with db.get_engine().connect() as conn:
        assert conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar_one() == expected_checkins
        balances = dict(conn.execute(text("SELECT id, xp FROM partner")).all())
        assert balances.pop(HELD_PARTNER_ID) == CHECKIN_XP * len(HELD_DAYS)
        assert set(balances.values()) == {CHECKIN_XP}
        assert len(balances) == len(FIRST_LOAD) + len(SECOND_LOAD)
        assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar_one() == 0
