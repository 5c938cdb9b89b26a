"""RabbitMQ users by role: an upstream app sends partner jobs and nothing else, by any route.

The project provisions the users (rewards.access.rabbitmq) on a vhost of
this module's own; a real worker runs as the worker user, and every producer
is a process of its own holding one role's credentials, as an upstream app,
an operator's CLI or beat would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import text

from rewards import contract, db
from rewards.access import rabbitmq
from tests.integration.test_trust_boundaries import PAYLOADS, STATE, snapshot
from tests.support.database import count
from tests.support.processes import REPO_ROOT, start_worker_process, wait_until

pytestmark = pytest.mark.system

VHOST = "rewards_test_roles"
USERS = {role: (f"rewards_test_{role}", f"{role}-test-password") for role in rabbitmq.ROLES}
AT = "2026-06-01T10:00:00+00:00"
OPERATOR_AND_MAINTENANCE_JOBS = [contract.ADJUST] + [
    contract.MAINTENANCE_EXPIRE_STREAKS, contract.MAINTENANCE_STREAK_RISK, contract.MAINTENANCE_RECONCILE,
    contract.MAINTENANCE_RELAY_OUTBOX, contract.MAINTENANCE_SWEEP_STALE_TASKS,
    contract.MAINTENANCE_UPDATE_LEADERBOARDS, contract.MAINTENANCE_RETENTION]
ADJUSTMENT = PAYLOADS[contract.ADJUST]
EMPTY = {"rows": dict.fromkeys(STATE, 0), "partner": [], "tasks": []}
# Jobs to a queue of the wrong role are refused by the broker before they
# are queued; a result would never come, so producers wait this long at most.
RESULT_TIMEOUT_S = 30


def url(role: str, *, vhost: str = VHOST, users=USERS) -> str:
    host = urlsplit(os.environ.get("REWARDS_SYSTEM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/x")).netloc
    username, password = users[role]
    return f"amqp://{username}:{password}@{host.rpartition('@')[2]}/{vhost}"


@pytest.fixture(scope="module")
def provisioned() -> Iterator[None]:
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)
    rabbitmq.apply(VHOST, USERS)
    yield
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", VHOST], capture_output=True)


@pytest.fixture
def worker(provisioned, clean_state, tmp_path):
    process = start_worker_process("roles", ",".join(contract.QUEUES), {"CELERY_BROKER_URL": url("worker")},
                                   tmp_path)
    # The worker declares the topology the producers publish into.
    wait_until(lambda: _queues_declared(), 60, "the worker to declare its queues", (process,))
    yield process
    process.kill()


def _queues_declared() -> bool:
    listed = subprocess.run(["rabbitmqctl", "-q", "list_queues", "-p", VHOST, "name"], capture_output=True,
                            text=True).stdout.split()
    return set(contract.QUEUES) <= set(listed)


PRODUCER = """
import json, sys
from rewards import contract
from rewards.client import RewardsClient
client = RewardsClient()
outcomes = []
jobs, wait = json.load(sys.stdin)
for name, kwargs, route in jobs:
    try:
        if route == "contract":
            sent = client.send(name, **kwargs)
        else:  # through an exchange of the sender's choosing: its queue, or the default one to the job's queue
            queue = route["exchange"] or contract.queue_for(name)
            sent = client.app.send_task(name, kwargs=kwargs, queue=contract.producer_queue(queue),
                                        exchange=route["exchange"], routing_key=queue, **route.get("options", {}))
        outcomes.append({"result": sent.get(timeout=%d) if wait else None})
    except Exception as error:
        outcomes.append({"error": type(error).__name__ + ": " + str(error)})
client.close()
json.dump(outcomes, sys.stdout)
""" % RESULT_TIMEOUT_S


def produce(role: str, jobs: list[tuple[str, dict, object]], *, vhost: str = VHOST, users=USERS,
            wait: bool = True) -> list[dict]:
    """Send `jobs` as `role` from a process of its own; each job's result (if `wait`), or the error its send raised."""
    done = subprocess.run([sys.executable, "-c", PRODUCER], cwd=REPO_ROOT, input=json.dumps([jobs, wait]),
                          env=os.environ | {"CELERY_BROKER_URL": url(role, vhost=vhost, users=users)},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"the {role} producer failed:\n{done.stderr}"
    return json.loads(done.stdout)


def partner_flow() -> list[tuple[str, dict, str]]:
    return [
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT}, "contract"),
        (contract.CHECKIN_BATCH, {"checkins": [{"partner_id": 2, "occurred_at": AT},
                                               {"partner_id": 3, "occurred_at": AT}]}, "contract"),
        (contract.TASK_START, {"partner_id": 1, "task_id": "telegram_bot", "occurred_at": AT}, "contract"),
        (contract.TASK_CLAIM, {"partner_id": 1, "task_id": "telegram_bot", "occurred_at": AT}, "contract"),
        (contract.REFERRAL_RECORD, {"referrer_id": 1, "referee_id": 2, "occurred_at": AT}, "contract"),
        (contract.PARTNER_UPDATE, {"partner_id": 3, "timezone": "Europe/Berlin", "occurred_at": AT}, "contract"),
    ]


def test_the_upstream_user_runs_the_whole_partner_facing_flow_and_reads_every_result(worker):
    outcomes = produce(contract.ROLE_UPSTREAM, partner_flow())

    assert [outcome.get("result", outcome)["status"] for outcome in outcomes] == ["applied"] * 6
    with db.get_engine().connect() as conn:
        xp = dict(conn.execute(text("SELECT id, xp FROM partner ORDER BY id")).all())
    assert xp == {1: 10 + 100, 2: 10, 3: 10}


def test_every_job_the_upstream_user_sends_through_any_queue_but_its_own_writes_nothing_but_a_failure(worker):
    # Every job name of the contract through every exchange (each queue's
    # own, and the default one) that is not the job's own queue, and the
    # operator's and maintenance jobs through their own exchanges too.
    exchanges = [*contract.QUEUES, ""]
    routes = [(name, exchange) for name in PAYLOADS for exchange in exchanges
              if exchange != contract.queue_for(name) or name in OPERATOR_AND_MAINTENANCE_JOBS]
    writable = contract.QUEUES_BY_ROLE[contract.ROLE_UPSTREAM]

    outcomes = produce(contract.ROLE_UPSTREAM, [(name, PAYLOADS[name], {"exchange": exchange})
                                                for name, exchange in routes])

    for (name, exchange), outcome in zip(routes, outcomes):
        if exchange in writable:  # it lands on a partner queue; the worker refuses it
            assert (outcome["result"]["status"], outcome["result"]["reason"]) == ("rejected", "not_permitted"), \
                (name, exchange, outcome)
        else:
            refused_exchange = exchange or "amq.default"
            assert f"ACCESS_REFUSED - access to exchange '{refused_exchange}'" in outcome.get("error", ""), \
                (name, exchange, outcome)
    with db.get_engine().connect() as conn:
        assert snapshot(conn) == EMPTY
        refused = conn.execute(text("SELECT task_name, reason, attempts FROM job_failure")).all()
    # One failure row per job, counting each partner queue it came through.
    arrivals = {name: sum(1 for sent, exchange in routes if sent == name and exchange in writable)
                for name in PAYLOADS}
    assert sorted(map(tuple, refused)) == sorted((name, "not_permitted", n) for name, n in arrivals.items())


def test_the_upstream_client_names_the_refused_job_and_who_may_send_it(worker):
    outcomes = produce(contract.ROLE_UPSTREAM, [(name, PAYLOADS[name], "contract")
                                                for name in OPERATOR_AND_MAINTENANCE_JOBS])

    for name, outcome in zip(OPERATOR_AND_MAINTENANCE_JOBS, outcomes):
        queue = contract.queue_for(name)
        assert outcome["error"].startswith(f"NotPermitted: the broker refused {name}: broker user "
                                           f"rewards_test_upstream may not send to the '{queue}' queue"), outcome


def test_a_producer_cannot_claim_to_be_another_user(worker):
    forged = (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT},
              {"exchange": contract.QUEUE_CHECKINS, "options": {"user_id": USERS[contract.ROLE_OPERATOR][0]}})

    [outcome] = produce(contract.ROLE_UPSTREAM, [forged])

    assert "PRECONDITION_FAILED - user_id property set to 'rewards_test_operator'" in outcome["error"]
    with db.get_engine().connect() as conn:
        assert count(conn, "checkin") == 0


def test_the_operator_user_adjusts_under_its_vouched_name_and_replays_maintenance_but_not_the_future(worker):
    future = (datetime.now(timezone.utc) + timedelta(days=1)).isoformat()
    adjusted, replayed, refused = produce(contract.ROLE_OPERATOR, [
        (contract.ADJUST, ADJUSTMENT, "contract"),
        (contract.MAINTENANCE_RECONCILE, {"now": AT, "full": True}, "contract"),
        (contract.MAINTENANCE_EXPIRE_STREAKS, {"now": future}, "contract"),
    ])

    assert adjusted["result"]["status"] == "applied"
    assert (replayed["result"]["job"], replayed["result"]["skipped"]) == (contract.MAINTENANCE_RECONCILE, None)
    assert (refused["result"]["status"], refused["result"]["reason"]) == ("rejected", "in_future")
    with db.get_engine().connect() as conn:
        audit = conn.execute(text("SELECT payload FROM audit_event WHERE event_type = 'adjustment'")).scalar_one()
    assert (audit["sent_by"], audit["sent_by_verified"]) == (USERS[contract.ROLE_OPERATOR][0], True)


def test_beat_runs_its_schedule_as_the_beat_user_which_may_send_nothing_else(worker, tmp_path):
    produce(contract.ROLE_UPSTREAM, [(contract.CHECKIN, {"partner_id": 1, "occurred_at": AT}, "contract")])
    beat = start_beat(tmp_path, {"REWARDS_EXPIRE_STREAKS_EVERY_S": "1"})
    try:
        # The check-in of June is long lost: expiry, sent by beat, resets it.
        wait_until(lambda: streak_of(1) == 0, 60, "beat's expiry run to reset the lost streak", (worker, beat))
        assert "ERROR" not in beat.log_tail(lines=1000), beat.log_tail()
    finally:
        beat.kill()

    [outcome] = produce(contract.ROLE_BEAT, [(contract.CHECKIN, {"partner_id": 2, "occurred_at": AT}, "contract")])
    assert outcome["error"].startswith("NotPermitted: the broker refused rewards.checkin: broker user "
                                       "rewards_test_beat may not send to the 'checkins' queue")


def streak_of(partner_id: int) -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT checkin_streak FROM partner WHERE id = :id"), {"id": partner_id}).scalar()


def start_beat(folder: Path, extra_env: dict[str, str]):
    from tests.support.processes import WorkerProcess

    log_path = folder / "beat.log"
    command = [sys.executable, "-m", "celery", "-A", "workers", "beat", "--loglevel=INFO",
               "--schedule", str(folder / "beat-schedule")]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True, stdout=log,
                                   stderr=subprocess.STDOUT,
                                   env=os.environ | {"CELERY_BROKER_URL": url(contract.ROLE_BEAT)} | extra_env)
    return WorkerProcess("beat", process, log_path)


def test_a_broker_booted_from_the_definitions_takes_jobs_before_any_worker_and_the_worker_agrees_with_it(
        clean_state, tmp_path):
    # What compose does: RabbitMQ loads the definitions the project writes,
    # upstream apps publish at once, workers come later and declare the same.
    vhost = "rewards_test_definitions"
    users = {role: (name + "_defs", password) for role, (name, password) in USERS.items()}
    subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
    # rabbitmqctl reads the file as the rabbitmq user: outside pytest's private folder.
    with tempfile.NamedTemporaryFile("w", suffix=".json", dir="/tmp") as definitions:
        definitions.write(rabbitmq.definitions(vhost, users))
        definitions.flush()
        os.chmod(definitions.name, 0o644)
        imported = subprocess.run(["rabbitmqctl", "-q", "import_definitions", definitions.name],
                                  capture_output=True, text=True)
    assert imported.returncode == 0, imported.stderr
    try:
        [queued] = produce(contract.ROLE_UPSTREAM, [(contract.CHECKIN, {"partner_id": 7, "occurred_at": AT},
                                                     "contract")], vhost=vhost, users=users, wait=False)
        assert "error" not in queued, queued
        worker = start_worker_process("defs", ",".join(contract.QUEUES),
                                      {"CELERY_BROKER_URL": url("worker", vhost=vhost, users=users)}, tmp_path)
        try:
            wait_until(lambda: xp_of(7) == 10, 60, "the queued check-in to be applied", (worker,))
        finally:
            worker.kill()
        assert "PRECONDITION_FAILED" not in worker.log_tail(lines=1000)
    finally:
        subprocess.run(["rabbitmqctl", "-q", "delete_vhost", vhost], capture_output=True)
        for username, _ in users.values():
            subprocess.run(["rabbitmqctl", "-q", "delete_user", username], capture_output=True)


def xp_of(partner_id: int) -> int | None:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT xp FROM partner WHERE id = :id"), {"id": partner_id}).scalar()
