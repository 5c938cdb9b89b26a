"""What beat reads for its metrics (rewards.metrics.state), from the real servers, with the roles production uses.

PostgreSQL is read as the reader role; each maintenance run is recorded by
the run itself (schedules/runner.py), a skipped one without losing what the
last done run found; a server that does not answer leaves its own series out.
"""

from __future__ import annotations

import dataclasses
import os
from datetime import timedelta

import redis
from kombu import Connection as BrokerConnection
from sqlalchemy import text

from rewards import contract, db, leaderboards
from rewards import settings as settings_module
from rewards.access.redis import priority_lists
from rewards.ledger import outbox
from rewards.ledger.failures import record_failure
from rewards.metrics.state import SOURCE_BROKER, families, read_state
from rewards.models import utcnow
from schedules import expire_streaks
from tests.support.jobs import checkin

# A Redis database no worker of the integration tier consumes.
IDLE_BROKER_URL = os.environ.get("REWARDS_SYSTEM_BROKER_URL", "redis://127.0.0.1:6379/12")
AMQP_URL = os.environ.get("REWARDS_SYSTEM_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/rewards_test")


def settings_with(**changes) -> settings_module.Settings:
    return dataclasses.replace(settings_module.get(), **changes)


def run(name: str) -> object:
    return next(run for run in read_state(settings_with(broker_url=IDLE_BROKER_URL)).maintenance if run.job == name)


def test_the_outbox_backlog_and_failed_jobs_are_read_as_the_reader(admin_conn):
    now = utcnow()
    for minutes_ago in (2, 1):
        outbox.emit(admin_conn, "streak.lost", 1, {}, now=now - timedelta(minutes=minutes_ago))
    delivered = outbox.emit(admin_conn, "streak.lost", 2, {}, now=now - timedelta(minutes=5))
    outbox.mark_delivered(admin_conn, [str(delivered)], now=now)
    for payload, reason in (({"a": 1}, "invalid_payload"), ({"a": 2}, "invalid_payload"), ({"b": 1}, "error")):
        record_failure(admin_conn, task_name=contract.CHECKIN, job_id=None, payload=payload, reason=reason,
                       error="x", now=now)

    state = read_state(settings_with(broker_url=IDLE_BROKER_URL))
    assert state.errors == {}
    assert state.outbox_pending == 2
    assert 115 <= (state.read_at - state.outbox_oldest_pending_at).total_seconds() <= 125
    assert state.failures_by_reason == {"invalid_payload": 2, "error": 1}


def test_a_run_is_recorded_and_a_skipped_one_keeps_what_the_last_done_run_found(client):
    checkin(client, 5101, day=-3)  # a streak to lose
    first = expire_streaks.run(db.get_engine(), utcnow(), batch_size=500)
    assert first.changed == 1
    recorded = run(contract.MAINTENANCE_EXPIRE_STREAKS)
    assert (recorded.examined, recorded.changed, recorded.skipped) == (first.examined, 1, None)
    assert recorded.done_at == recorded.last_run_at

    with db.advisory_lock(db.get_engine(), contract.MAINTENANCE_EXPIRE_STREAKS):
        skipped = expire_streaks.run(db.get_engine(), utcnow(), batch_size=500)
    assert skipped.skipped
    after = run(contract.MAINTENANCE_EXPIRE_STREAKS)
    assert after.skipped == skipped.skipped and after.last_run_at > recorded.last_run_at
    assert (after.done_at, after.examined, after.changed) == (recorded.done_at, first.examined, 1)
    assert run(contract.MAINTENANCE_RECONCILE).done_at is None  # never ran


def test_leaderboard_lag_is_the_age_of_the_oldest_ledger_row_the_boards_have_not_taken(client, admin_conn):
    checkin(client, 5201, day=0)
    admin_conn.execute(text("UPDATE xp_ledger SET created_at = now() - interval '90 seconds'"))
    store = leaderboards.store_from_settings()
    try:
        store.hset(leaderboards.CHECKPOINT_KEY, mapping={"ledger_id": 0, "outbox_id": 0})
        behind = read_state(settings_with(broker_url=IDLE_BROKER_URL)).leaderboard_lag_s
        newest = admin_conn.execute(text("SELECT max(id) FROM xp_ledger")).scalar_one()
        store.hset(leaderboards.CHECKPOINT_KEY, "ledger_id", newest)
        caught_up = read_state(settings_with(broker_url=IDLE_BROKER_URL)).leaderboard_lag_s
    finally:
        store.delete(leaderboards.CHECKPOINT_KEY)
        store.close()
    assert 85 <= behind <= 100 and caught_up == 0


def test_queue_depths_on_redis_count_every_priority_list():
    broker = redis.Redis.from_url(IDLE_BROKER_URL)
    checkins, *priorities = priority_lists(contract.QUEUE_CHECKINS)
    try:
        broker.lpush(checkins, "a", "b")
        broker.lpush(priorities[0], "c")
        depths = read_state(settings_with(broker_url=IDLE_BROKER_URL)).queue_messages
    finally:
        broker.delete(checkins, *priorities)
    assert depths == {contract.QUEUE_CHECKINS: 3, contract.QUEUE_CLAIMS: 0, contract.QUEUE_OPERATOR: 0,
                      contract.QUEUE_MAINTENANCE: 0}


def test_queue_depths_on_rabbitmq_are_read_by_passive_declare():
    with BrokerConnection(AMQP_URL) as connection:
        checkins = next(q for q in contract.kombu_queues() if q.name == contract.QUEUE_CHECKINS)
        queue = checkins(connection.default_channel)
        queue.declare()
        queue.purge()
        producer = connection.Producer()
        for number in range(3):
            producer.publish({"n": number}, exchange=queue.exchange, routing_key=queue.routing_key,
                             serializer="json")
        try:
            depths = read_state(settings_with(broker_url=AMQP_URL)).queue_messages
        finally:
            queue.purge()
    # Exact at once, where `rabbitmqctl list_queues` may lag by a quorum tick.
    assert depths[contract.QUEUE_CHECKINS] == 3
    assert set(depths) == {*contract.QUEUES, contract.PARKED_QUEUE}


def test_a_broker_that_does_not_answer_leaves_only_its_own_series_out():
    state = read_state(settings_with(broker_url="redis://127.0.0.1:1/0"))
    assert set(state.errors) == {SOURCE_BROKER} and state.queue_messages is None
    assert state.failures_by_reason is not None
    served = {family.name: family for family in families(state, state.read_at)}
    up = {sample.labels["source"]: sample.value for sample in served["rewards_state_source_up"].samples}
    assert up == {"broker": 0.0, "database": 1.0, "redis": 1.0}
    assert "rewards_queue_messages" not in served and "rewards_job_failures_unresolved" in served

