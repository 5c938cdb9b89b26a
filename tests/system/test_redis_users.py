"""Redis ACL users (rewards.access.redis): each role does its work with its own user, and nothing more.

A `celery -A workers worker` process runs as the worker user on a broker
database of its own; producers run as the upstream, operator and beat users
in processes of their own (Celery prefers the environment's broker URL to
any given in code). The users are provisioned with `rewards.access.redis.apply`
under test-only names and removed afterwards; the machine's default user
only provisions them and inspects the broker.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import redis
from sqlalchemy import text

from rewards import contract, db, deadletters, settings
from rewards.access import redis as redis_access
from tests.integration.test_retries import hold_partner_lock
from tests.integration.test_trust_boundaries import AT, PAYLOADS, snapshot
from tests.system.test_worker_crash import LIMITS_ENV
from tests.support.processes import REPO_ROOT, start_worker_process, wait_until

pytestmark = pytest.mark.system

USERS = {role: (f"rewards_test_{role}", f"test-{role}-password") for role in redis_access.ROLES}
RESULT_TIMEOUT_S = 30
OPERATOR_JOBS = [name for name in PAYLOADS if contract.queue_for(name) not in contract.QUEUES_BY_ROLE["upstream"]]
UPSTREAM_JOBS = [name for name in PAYLOADS if name not in OPERATOR_JOBS]


def as_user(url: str, role: str) -> str:
    """`url` with the role's user name and password in it."""
    username, password = USERS[role]
    parts = urlsplit(url)
    return urlunsplit(parts._replace(netloc=f"{username}:{password}@{parts.hostname}:{parts.port or 6379}"))


def database_of(url: str) -> int:
    return int(urlsplit(url).path.strip("/") or 0)


# Runs in a producer process: each step is sent (onto a given queue, or its
# contract queue), its result awaited before the next, and what happened
# printed as JSON: the result, or the error and the errors that caused it.
PRODUCER = """
import json, sys
from kombu import Queue
from rewards.client import RewardsClient

def causes(error):
    while error is not None:
        yield type(error).__name__
        error = error.__cause__ or error.__context__

client = RewardsClient()
outcomes = []
for name, kwargs, queue in json.load(sys.stdin):
    try:
        if queue is None:
            sent = client.send(name, **kwargs)
        else:
            sent = client.app.send_task(name, kwargs=kwargs, queue=Queue(queue, no_declare=True),
                                        exchange="", routing_key=queue)
        outcomes.append({"result": sent.get(timeout=%d), "retries": sent.retries})
    except Exception as error:
        outcomes.append({"error": list(causes(error)), "message": str(error)})
client.close()
json.dump(outcomes, sys.stdout)
""" % RESULT_TIMEOUT_S


def produce(role: str, broker_url: str, steps: list[tuple[str, dict, str | None]]) -> list[dict]:
    """Send `steps` as `role` from a process of its own; the outcome of each, in order."""
    env = {"CELERY_BROKER_URL": as_user(broker_url, role),
           "CELERY_RESULT_BACKEND": as_user(settings.get().result_backend, role)}
    sent = subprocess.run([sys.executable, "-c", PRODUCER], cwd=REPO_ROOT, env=os.environ | env,
                          input=json.dumps(steps), capture_output=True, text=True, timeout=300)
    assert sent.returncode == 0, f"the {role} producer failed:\n{sent.stderr}"
    return json.loads(sent.stdout)


def refused_by_broker(outcome: dict) -> bool:
    return "NoPermissionError" in outcome.get("error", [])


def refused_by_name(outcome: dict) -> bool:
    """Redis said NOPERM, and RewardsClient turned it into an error naming the job and its queue."""
    return refused_by_broker(outcome) and outcome["error"][0] == "NotPermitted" and "may not send" in outcome["message"]


@pytest.fixture
def redis_users(system_broker_url) -> Iterator[redis.Redis]:
    """The four users on the machine's Redis, set by the project's own `apply`; the admin connection."""
    admin = redis.Redis.from_url(system_broker_url)
    redis_access.apply(admin, USERS, broker_db=database_of(system_broker_url))
    yield admin
    admin.execute_command("ACL", "DELUSER", *(username for username, _ in USERS.values()))


def denials(admin: redis.Redis, role: str) -> int:
    """How many commands Redis has refused the role's user (ACL LOG is server-wide and survives the user)."""
    username = USERS[role][0]
    return sum(int(entry["count"]) for entry in admin.acl_log(128) if entry["username"] == username)


def start_acl_worker(name: str, admin: redis.Redis, broker_url: str, log_dir: Path, limits: dict[str, str]):
    """A worker consuming every queue as the worker user, once it consumes."""
    current = settings.get()
    env = limits | {"CELERY_BROKER_URL": as_user(broker_url, "worker"),
                    "CELERY_RESULT_BACKEND": as_user(current.result_backend, "worker"),
                    "REWARDS_DEAD_LETTER_URL": as_user(current.result_backend, "worker"),
                    "REWARDS_REDIS_URL": as_user(current.redis_url or current.result_backend, "worker")}
    worker = start_worker_process(name, ",".join(contract.QUEUES), env, log_dir)
    # Its remote-control queue is bound once it consumes (kombu's binding table of celery.pidbox).
    pidbox = redis_access.BINDING_TABLE % redis_access.REMOTE_CONTROL_EXCHANGE
    wait_until(lambda: any(f"{name}@".encode() in member for member in admin.smembers(pidbox)), 60,
               f"{name} to start as the worker user", (worker,))
    return worker


@pytest.fixture
def acl_worker(redis_users, system_broker_url, clean_state, tmp_path: Path):
    """A worker as the worker user; no Redis command of it may be refused."""
    refused_before = denials(redis_users, "worker")
    worker = None
    try:
        worker = start_acl_worker("acl-worker", redis_users, system_broker_url, tmp_path,
                                  {"REWARDS_LOCK_TIMEOUT_MS": "500"})
        yield worker
        assert worker.alive(), f"the worker died:\n{worker.log_tail()}"
        assert denials(redis_users, "worker") == refused_before, redis_users.acl_log(20)
    finally:
        if worker is not None:
            worker.kill()


def applied(outcome: dict) -> bool:
    return outcome.get("result", {}).get("status") == "applied"


def test_the_upstream_user_runs_the_whole_partner_facing_flow_and_reads_its_results(
        redis_users, acl_worker, system_broker_url):
    refused_before = denials(redis_users, "upstream")
    steps = [
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT}, None),
        (contract.CHECKIN_BATCH, {"checkins": [{"partner_id": 2, "occurred_at": AT},
                                               {"partner_id": 3, "occurred_at": AT}]}, None),
        (contract.TASK_START, {"partner_id": 1, "task_id": "telegram_bot", "occurred_at": AT}, None),
        (contract.TASK_CLAIM, {"partner_id": 1, "task_id": "telegram_bot",
                               "occurred_at": "2026-06-01T10:05:00+00:00"}, None),
        (contract.REFERRAL_RECORD, {"referrer_id": 1, "referee_id": 4, "occurred_at": AT}, None),
        (contract.PARTNER_UPDATE, {"partner_id": 1, "timezone": "Asia/Tokyo", "occurred_at": AT}, None),
    ]

    outcomes = produce("upstream", system_broker_url, steps)

    assert [applied(outcome) for outcome in outcomes] == [True] * len(steps), outcomes
    assert outcomes[1]["result"]["applied"] == 2
    assert outcomes[3]["result"]["xp_granted"] > 0
    assert denials(redis_users, "upstream") == refused_before


def test_every_operator_and_maintenance_job_upstream_sends_by_any_queue_changes_nothing_and_is_recorded(
        acl_worker, system_broker_url):
    seeded = produce("upstream", system_broker_url, [
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT}, None),
        (contract.TASK_START, {"partner_id": 1, "task_id": "banking_app", "occurred_at": AT}, None)])
    assert all(map(applied, seeded)), seeded
    with db.get_engine().connect() as conn:
        before = snapshot(conn)
    broker = redis.Redis.from_url(system_broker_url)

    routes = [(name, queue) for name in OPERATOR_JOBS for queue in contract.QUEUES]
    outcomes = produce("upstream", system_broker_url,
                       [(name, PAYLOADS[name], None) for name in OPERATOR_JOBS]
                       + [(name, PAYLOADS[name], queue) for name, queue in routes])

    by_contract, by_route = outcomes[:len(OPERATOR_JOBS)], outcomes[len(OPERATOR_JOBS):]
    assert all(map(refused_by_name, by_contract)), by_contract
    writable = contract.QUEUES_BY_ROLE["upstream"]
    for (name, queue), outcome in zip(routes, by_route):
        if queue in writable:
            assert (outcome["result"]["status"], outcome["result"]["reason"]) == ("rejected", "not_permitted")
        else:
            assert refused_by_broker(outcome), (name, queue, outcome)
    assert [broker.llen(queue) for queue in contract.QUEUES] == [0] * len(contract.QUEUES)
    with db.get_engine().connect() as conn:
        assert snapshot(conn) == before
        failures = conn.execute(text("SELECT task_name, reason, attempts FROM job_failure")).all()
    # A failure is recorded once per job and payload, counting its arrivals.
    assert sorted(map(tuple, failures)) == sorted((name, "not_permitted", len(writable)) for name in OPERATOR_JOBS)


def test_the_upstream_user_cannot_touch_other_lists_or_run_dangerous_commands(redis_users, system_broker_url):
    upstream = redis.Redis.from_url(as_user(system_broker_url, "upstream"))
    refused = [
        lambda: upstream.lpush(contract.QUEUE_OPERATOR, "{}"),
        lambda: upstream.lpush(contract.QUEUE_MAINTENANCE, "{}"),
        lambda: upstream.lpush(redis_access.priority_lists(contract.QUEUE_OPERATOR)[1], "{}"),
        lambda: upstream.hset("unacked", "tag", "{}"),
        lambda: upstream.zadd("unacked_index", {"tag": 0}),
        lambda: upstream.sadd(redis_access.BINDING_TABLE % contract.QUEUE_OPERATOR, "x"),
        lambda: upstream.rpop(contract.QUEUE_CLAIMS),       # taking another client's job
        lambda: upstream.delete(contract.QUEUE_CHECKINS),   # dropping queued jobs
        lambda: upstream.set("celery-task-meta-forged", "{}"),
        lambda: upstream.execute_command("PSUBSCRIBE", "celery-task-meta-*"),  # watching every result
        lambda: upstream.keys("*"),
        lambda: upstream.flushall(),
        lambda: upstream.config_get("*"),
    ]
    outcomes = []
    for attempt in refused:
        try:
            attempt()
            outcomes.append("allowed")
        except redis.exceptions.NoPermissionError:
            outcomes.append("refused")
    assert outcomes == ["refused"] * len(refused)
    assert upstream.lpush(contract.QUEUE_CLAIMS, "not a message") == 1  # what it may do
    redis.Redis.from_url(system_broker_url).delete(contract.QUEUE_CLAIMS)


def test_the_operator_adjusts_and_runs_maintenance_and_beat_sends_maintenance_only(acl_worker, system_broker_url):
    operator = produce("operator", system_broker_url, [
        (contract.ADJUST, PAYLOADS[contract.ADJUST], None),
        (contract.MAINTENANCE_RECONCILE, {}, None),
        (contract.CHECKIN, {"partner_id": 1, "occurred_at": AT}, None)])
    beat = produce("beat", system_broker_url, [
        (contract.MAINTENANCE_EXPIRE_STREAKS, {}, None),
        (contract.CHECKIN, {"partner_id": 2, "occurred_at": AT}, None),
        (contract.ADJUST, {**PAYLOADS[contract.ADJUST], "request_id": "beat"}, None)])

    assert operator[0]["result"]["xp_granted"] == PAYLOADS[contract.ADJUST]["amount"]
    assert "error" not in operator[1] and applied(operator[2]), operator
    assert "error" not in beat[0] and "examined" in beat[0]["result"], beat
    assert [refused_by_name(outcome) for outcome in beat[1:]] == [True, True], beat
    with db.get_engine().connect() as conn:
        assert conn.execute(text("SELECT id, xp FROM partner ORDER BY id")).all() == [(1, 1_000_000_010)]


def test_the_worker_retries_stores_results_and_keeps_dead_letters_with_its_own_user(acl_worker, system_broker_url):
    assert applied(produce("upstream", system_broker_url, [
        (contract.CHECKIN, {"partner_id": 31, "occurred_at": AT}, None)])[0])
    holder = hold_partner_lock(31, hold_s=1.5)
    try:
        retried = produce("upstream", system_broker_url, [
            (contract.CHECKIN, {"partner_id": 31, "occurred_at": "2026-06-02T10:00:00+00:00"}, None)])[0]
    finally:
        holder.join()
    assert applied(retried) and retried["result"]["streak"] == 2 and retried["retries"] >= 1, retried

    # Where a failure record waits while PostgreSQL is down: written and moved with the worker's user.
    url = as_user(settings.get().result_backend, "worker")
    letter = deadletters.DeadLetter("acl-test", contract.CHECKIN, None, {}, "test", "test", AT)
    deadletters.push(url, letter)
    try:
        assert [kept.id for kept in deadletters.pending(url)] == ["acl-test"]
    finally:
        redis.Redis.from_url(url).hdel(deadletters.HASH_KEY, letter.id)


def send_checkins(broker_url: str, partner_ids: range) -> None:
    """Fire-and-forget check-ins on one day, as the upstream user."""
    subprocess.run([sys.executable, "-c", "import sys\nfrom rewards.client import RewardsClient\n"
                    "client = RewardsClient()\n"
                    "for p in range(int(sys.argv[1]), int(sys.argv[2])): client.checkin(p, sys.argv[3], "
                    "ignore_result=True)\n", str(partner_ids.start), str(partner_ids.stop), AT],
                   cwd=REPO_ROOT, check=True, timeout=120,
                   env=os.environ | {"CELERY_BROKER_URL": as_user(broker_url, "upstream"),
                                     "CELERY_RESULT_BACKEND": as_user(settings.get().result_backend, "upstream")})


def unacknowledged_partners(broker: redis.Redis) -> set[int]:
    """The partners of the check-ins kombu holds as unacknowledged (`unacked`: [message, exchange, routing key])."""
    partners = set()
    for raw in broker.hvals("unacked"):
        message = json.loads(raw)[0]
        _, kwargs, _ = json.loads(base64.b64decode(message["body"]))
        partners.add(kwargs["partner_id"])
    return partners


def checked_in(partner_ids) -> set[int]:
    with db.get_engine().connect() as conn:
        return set(conn.execute(text("SELECT partner_id FROM checkin WHERE partner_id = ANY(:ids)"),
                                {"ids": list(partner_ids)}).scalars())


def test_a_killed_workers_messages_are_restored_and_applied_once_with_the_worker_user(
        redis_users, system_broker_url, clean_state, tmp_path):
    # The visibility-timeout sweep (its lock, its script, RPUSH back onto the
    # queue) is the worker's rarest use of Redis: make it happen.
    refused_before = denials(redis_users, "worker")
    broker = redis.Redis.from_url(system_broker_url)
    partners = range(100, 400)
    first = start_acl_worker("acl-first", redis_users, system_broker_url, tmp_path, LIMITS_ENV)
    send_checkins(system_broker_url, partners)
    wait_until(lambda: broker.hlen("unacked") > 0, 30, "the worker to hold unacknowledged messages", (first,))
    first.kill()
    in_flight = unacknowledged_partners(broker)
    assert in_flight  # the fault happened: messages were in flight when the worker died

    second = start_acl_worker("acl-second", redis_users, system_broker_url, tmp_path, LIMITS_ENV)
    try:
        wait_until(lambda: checked_in(in_flight) == in_flight and broker.hlen("unacked") == 0, 90,
                   "the in-flight check-ins restored and applied", (second,))
        # A message BRPOP took but kombu had not yet recorded is lost with
        # the worker (DESIGN.md section 10): the producer sends again, and
        # what was applied comes back a duplicate.
        send_checkins(system_broker_url, partners)
        wait_until(lambda: len(checked_in(partners)) == len(partners) and broker.llen("checkins") == 0, 90,
                   "every check-in applied", (second,), progress=lambda: f"{len(checked_in(partners))} applied")
        with db.get_engine().connect() as conn:
            assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger")).scalar() == len(partners)
    finally:
        second.kill()
    assert denials(redis_users, "worker") == refused_before, redis_users.acl_log(20)


def test_beat_reads_its_metrics_with_its_own_user_and_may_change_none_of_what_it_reads(redis_users,
                                                                                      system_broker_url):
    from rewards import leaderboards
    from rewards.metrics.state import SOURCE_BROKER, SOURCE_REDIS, read_state

    admin = redis.Redis.from_url(system_broker_url)
    admin.lpush(contract.QUEUE_CHECKINS, "a", "b")
    admin.hset(deadletters.HASH_KEY, "letter", "{}")
    admin.hset(leaderboards.CHECKPOINT_KEY, mapping={"ledger_id": 0, "outbox_id": 0})
    beat_url = as_user(system_broker_url, "beat")
    beat = redis.Redis.from_url(beat_url)
    try:
        state = read_state(dataclasses.replace(settings.get(), broker_url=beat_url, dead_letter_url=beat_url,
                                               redis_url=beat_url))
        refused = []
        for attempt in (lambda: beat.rpop(contract.QUEUE_CHECKINS), lambda: beat.hdel(deadletters.HASH_KEY, "letter"),
                        lambda: beat.hset(leaderboards.CHECKPOINT_KEY, "ledger_id", 99),
                        lambda: beat.llen(redis_access.UNACKED_KEYS[0])):
            try:
                attempt()
            except redis.exceptions.NoPermissionError:
                refused.append(True)
    finally:
        admin.delete(contract.QUEUE_CHECKINS, deadletters.HASH_KEY, leaderboards.CHECKPOINT_KEY)
    assert SOURCE_BROKER not in state.errors and SOURCE_REDIS not in state.errors, state.errors
    assert state.queue_messages[contract.QUEUE_CHECKINS] == 2 and state.dead_letters == 1
    assert state.leaderboard_lag_s is not None
    assert refused == [True] * 4
