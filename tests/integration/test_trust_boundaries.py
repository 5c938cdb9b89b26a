"""Who may run what: a job runs only when it arrived through its own queue, and maintenance never as of the future.

On the Redis broker a producer writes a message's routing details itself,
so these tests forge them: each job is pushed onto every queue but its own,
its `delivery_info` claiming its own queue. The worker must refuse it
(`not_permitted`), record it, and write nothing else.
"""

from __future__ import annotations

import json
import uuid

import pytest
import redis
from celery.result import AsyncResult
from kombu import Queue
from sqlalchemy import text

from rewards import contract, settings
from tests.support.database import count
from tests.support.jobs import RESULT_TIMEOUT_S, run

AT = "2026-06-01T10:00:00+00:00"
FAR_FUTURE = "2199-01-01T00:00:00+00:00"

# A valid payload for every job of the contract.
PAYLOADS = {
    contract.CHECKIN: {"partner_id": 1, "occurred_at": AT},
    contract.CHECKIN_BATCH: {"checkins": [{"partner_id": 1, "occurred_at": AT}]},
    contract.TASK_START: {"partner_id": 1, "task_id": "banking_app", "occurred_at": AT},
    contract.TASK_CLAIM: {"partner_id": 1, "task_id": "telegram_bot", "occurred_at": AT},
    contract.REFERRAL_RECORD: {"referrer_id": 1, "referee_id": 2, "occurred_at": AT},
    contract.PARTNER_UPDATE: {"partner_id": 1, "pro_until": "2030-01-01T00:00:00+00:00", "occurred_at": AT},
    contract.CLAIMS_BATCH: {"items": [{"job": contract.TASK_START,
                                       "kwargs": {"partner_id": 1, "task_id": "banking_app", "occurred_at": AT}}]},
    contract.ADJUST: {"partner_id": 1, "amount": 1_000_000_000, "reason": "x", "request_id": "mint"},
    contract.MAINTENANCE_EXPIRE_STREAKS: {},
    contract.MAINTENANCE_STREAK_RISK: {},
    contract.MAINTENANCE_RECONCILE: {"full": True},
    contract.MAINTENANCE_RELAY_OUTBOX: {},
    contract.MAINTENANCE_SWEEP_STALE_TASKS: {},
    contract.MAINTENANCE_UPDATE_LEADERBOARDS: {},
    contract.MAINTENANCE_RETENTION: {},
}
WRONG_ROUTES = [(name, queue) for name in PAYLOADS for queue in contract.QUEUES
                if queue != contract.queue_for(name)]
# Everything a job can write, but the failure records.
STATE = ("partner", "checkin", "partner_task", "referral", "adjustment", "plan_change", "xp_ledger",
         "audit_event", "outbox", "streak_freeze", "partner_badge", "maintenance_checkpoint")


def test_every_job_of_the_contract_has_a_payload_here():
    names = set(contract.QUEUE_BY_TASK) | {name for name in PAYLOADS if name.startswith(contract.MAINTENANCE_PREFIX)}
    assert set(PAYLOADS) == names


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings.get().broker_url)


def forge(client, task_name: str, kwargs: dict, onto_queue: str, claiming_queue: str) -> AsyncResult:
    """Push a job onto `onto_queue` whose routing details claim it came through `claiming_queue`.

    The job is published to a queue nobody consumes, taken off it, its
    `delivery_info` rewritten, and pushed where the test wants it: what any
    client holding write access to `onto_queue` on Redis can do.
    """
    parking = f"forge-{uuid.uuid4().hex}"
    sent = client.app.send_task(task_name, kwargs=kwargs, queue=Queue(parking, no_declare=True),
                                exchange="", routing_key=parking)
    message = json.loads(broker().rpop(parking))
    message["properties"]["delivery_info"] = {"exchange": claiming_queue, "routing_key": claiming_queue}
    broker().lpush(onto_queue, json.dumps(message))
    return sent


def seed_work_for_maintenance(client) -> None:
    """A partner whose streak is long lost and whose task attempt is long stale: maintenance would change both."""
    assert run(client, contract.CHECKIN, partner_id=1, occurred_at=AT)["status"] == "applied"
    assert run(client, contract.TASK_START, partner_id=1, task_id="telegram_bot",
               occurred_at=AT)["status"] == "applied"


def snapshot(conn) -> dict:
    tables = {table: count(conn, table) for table in STATE}
    partner = conn.execute(text("SELECT xp, checkin_streak, referral_count, pro_until FROM partner ORDER BY id")).all()
    tasks = conn.execute(text("SELECT task_id, status FROM partner_task ORDER BY task_id")).all()
    return {"rows": tables, "partner": partner, "tasks": tasks}


@pytest.mark.parametrize(("task_name", "queue"), WRONG_ROUTES)
def test_a_job_forged_onto_another_queue_is_not_permitted_recorded_and_changes_nothing(
        client, conn, task_name, queue):
    seed_work_for_maintenance(client)
    before = snapshot(conn)
    own_queue = contract.queue_for(task_name)

    result = forge(client, task_name, PAYLOADS[task_name], onto_queue=queue,
                   claiming_queue=own_queue).get(timeout=RESULT_TIMEOUT_S)

    assert (result["status"], result["reason"], result["queue"]) == ("rejected", "not_permitted", queue)
    assert snapshot(conn) == before
    failure = conn.execute(text("SELECT task_name, reason, payload FROM job_failure")).one()
    assert (failure.task_name, failure.reason, failure.payload) == (task_name, "not_permitted", PAYLOADS[task_name])


def test_a_job_on_its_own_queue_runs_whatever_its_message_claims(client, conn):
    # The stamp is the consumer's: a forged claim of the operator queue
    # neither refuses a check-in taken from `checkins` nor grants it anything.
    result = forge(client, contract.CHECKIN, PAYLOADS[contract.CHECKIN], onto_queue=contract.QUEUE_CHECKINS,
                   claiming_queue=contract.QUEUE_OPERATOR).get(timeout=RESULT_TIMEOUT_S)

    assert (result["status"], result["xp_granted"]) == ("applied", 10)
    assert count(conn, "job_failure") == 0


@pytest.mark.parametrize("task_name", [contract.MAINTENANCE_EXPIRE_STREAKS, contract.MAINTENANCE_SWEEP_STALE_TASKS,
                                       contract.MAINTENANCE_STREAK_RISK, contract.MAINTENANCE_RECONCILE])
def test_a_maintenance_run_as_of_the_future_is_rejected_recorded_and_changes_nothing(client, conn, task_name):
    seed_work_for_maintenance(client)
    before = snapshot(conn)

    result = run(client, task_name, now=FAR_FUTURE)

    assert (result["status"], result["reason"], result["now"]) == ("rejected", "in_future", FAR_FUTURE)
    assert "never the future" in result["message"]
    assert snapshot(conn) == before
    failure = conn.execute(text("SELECT task_name, reason FROM job_failure")).one()
    assert (failure.task_name, failure.reason) == (task_name, "in_future")


def test_a_maintenance_run_as_of_the_past_replays_that_instant(client, conn):
    seed_work_for_maintenance(client)

    result = run(client, contract.MAINTENANCE_EXPIRE_STREAKS, now="2026-06-05T00:00:00+00:00")

    assert (result["examined"], result["changed"]) == (1, 1)
    assert conn.execute(text("SELECT checkin_streak FROM partner WHERE id = 1")).scalar_one() == 0


def test_an_adjustment_through_the_operator_queue_is_applied_and_its_sender_unverified_on_redis(client, conn):
    result = run(client, contract.ADJUST, **PAYLOADS[contract.ADJUST])

    assert (result["status"], result["xp_granted"]) == ("applied", 1_000_000_000)
    audit = conn.execute(text("SELECT payload FROM audit_event WHERE event_type = 'adjustment'")).scalar_one()
    # The test broker URL names no user, and Redis vouches for none anyway.
    assert (audit["sent_by"], audit["sent_by_verified"]) == (None, False)
