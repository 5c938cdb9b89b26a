"""A job that committed while its result store is down is not recorded as failed (DESIGN.md section 6),
and one whose store comes back within the backend's retries gets its result stored.

The worker's result backend is a Redis port nothing listens on; its broker
is a Redis database no other worker of the suite consumes, and its dead
letters go to that same live database. The check-in commits, storing its
result fails after the backend's retries and the message is acknowledged,
yet no job_failure row and no dead letter appear: the outcome is found in
PostgreSQL by its key.
"""

import json
import socket
import time
from datetime import date

import pytest
import redis
from sqlalchemy import text

from chaos.servers import Redis
from rewards import db, deadletters, queries
from rewards.contract import keys
from tests.support.database import admin_transaction
from tests.support.processes import send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

PARTNER_ID = 7301
OCCURRED_AT = "2026-01-05T12:00:00+00:00"


def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def count(statement: str) -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text(statement)).scalar_one()


def test_a_committed_job_whose_result_cannot_be_stored_is_not_recorded_as_failed(
        system_broker_url, clean_state, tmp_path):
    env = {"CELERY_BROKER_URL": system_broker_url, "REWARDS_DEAD_LETTER_URL": system_broker_url,
           "CELERY_RESULT_BACKEND": f"redis://127.0.0.1:{unused_port()}/0"}
    broker = redis.Redis.from_url(system_broker_url)
    worker = start_worker_process("result-store-down", "checkins", env, tmp_path)
    try:
        send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID, "occurred_at": OCCURRED_AT})],
                  {"CELERY_BROKER_URL": system_broker_url})
        wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == 1, 60, "the check-in to commit", (worker,))
        # The backend's retries take about 20 s; its error in the log proves storing failed,
        # and the empty broker that the worker is done with the message.
        wait_until(lambda: "BackendStoreError" in worker.log_path.read_text(errors="replace"), 120,
                   "the worker to give up storing the result", (worker,))
        wait_until(lambda: broker.llen("checkins") == 0 and broker.hlen("unacked") == 0, 60,
                   "the message to be acknowledged", (worker,))
    finally:
        worker.kill()
    assert count("SELECT COUNT(*) FROM job_failure") == 0, worker.log_tail()
    assert deadletters.pending(system_broker_url) == [], worker.log_tail()
    with db.get_engine().connect() as conn:
        found = queries.outcome(conn, keys.checkin_key(PARTNER_ID, date(2026, 1, 5)))
    assert found is not None and found.status == "applied"


def test_a_result_store_that_blinks_while_a_job_commits_still_gets_the_result(
        system_broker_url, clean_state, tmp_path):
    # The result store is a Redis of the test's own: stopped while the job
    # waits on its partner's row (which the test holds), so the job commits
    # into a store that is down; started again two seconds later, well
    # inside the backend's retries (celeryconfig: result_backend_always_retry).
    store = Redis(tmp_path)
    store.start()
    env = {"CELERY_BROKER_URL": system_broker_url, "REWARDS_DEAD_LETTER_URL": system_broker_url,
           "CELERY_RESULT_BACKEND": store.url(0), "REWARDS_LOCK_TIMEOUT_MS": "30000"}
    worker = start_worker_process("result-store-blink", "checkins", env, tmp_path)
    try:
        send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID, "occurred_at": "2026-01-04T12:00:00+00:00"})],
                  {"CELERY_BROKER_URL": system_broker_url})
        wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == 1, 60, "the partner's first check-in", (worker,))
        with admin_transaction() as conn:
            conn.execute(text("SELECT 1 FROM partner WHERE id = :id FOR UPDATE"), {"id": PARTNER_ID})
            [job_id] = send_jobs([("rewards.checkin", {"partner_id": PARTNER_ID, "occurred_at": OCCURRED_AT})],
                                 {"CELERY_BROKER_URL": system_broker_url})
            wait_until(lambda: waiting_on_a_lock() == 1, 60, "the job to wait on its partner", (worker,))
            store.stop()
        wait_until(lambda: count("SELECT COUNT(*) FROM checkin") == 2, 60, "the check-in to commit", (worker,))
        wait_until(lambda: "Failed operation _store_result" in worker.log_path.read_text(errors="replace"), 60,
                   "the worker to retry storing the result", (worker,))
        time.sleep(2)
        store.start()
        stored = redis.Redis.from_url(store.url(0))
        wait_until(lambda: stored.exists(f"celery-task-meta-{job_id}"), 60, "the result to be stored", (worker,))
        result = json.loads(stored.get(f"celery-task-meta-{job_id}"))
    finally:
        worker.kill()
        store.cleanup()
    assert (result["status"], result["result"]["status"]) == ("SUCCESS", "applied"), result
    assert count("SELECT COUNT(*) FROM job_failure") == 0, worker.log_tail()


def waiting_on_a_lock() -> int:
    return count("SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                 "AND wait_event_type = 'Lock'")
