"""Integration fixtures: the real PostgreSQL, the real Redis broker, a real worker.

The worker is Celery's embedded test worker (a thread running a thread pool of
four), consuming real messages from Redis, so jobs go through serialization,
routing, acks and retries exactly as in production. Crash behaviour needs a
worker process and lives in tests/system.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from sqlalchemy import Connection, text

from rewards import contract, db
from rewards import settings as settings_module
from rewards.client import RewardsClient
from tests.invariants import assert_invariants
from workers import app

TABLES = ("outbox", "partner_badge", "streak_freeze", "maintenance_checkpoint",
          "job_failure", "audit_event", "xp_ledger", "adjustment", "referral", "partner_task",
          "checkin", "partner")
RESULT_TIMEOUT_S = 60


def flush_redis_test_databases() -> None:
    current = settings_module.get()
    for url in (current.broker_url, current.result_backend):
        redis.Redis.from_url(url).flushdb()


def truncate_tables(conn: Connection) -> None:
    conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


@pytest.fixture(scope="session")
def rewards_worker() -> Iterator[Any]:
    """A real Celery worker (threads ×4) consuming every rewards queue from Redis."""
    flush_redis_test_databases()
    with start_worker(app, pool="threads", concurrency=4, perform_ping_check=False,
                      queues=list(contract.QUEUES), shutdown_timeout=30) as worker:
        yield worker


@pytest.fixture(scope="session")
def client(rewards_worker) -> Iterator[RewardsClient]:
    rewards_client = RewardsClient()
    yield rewards_client
    rewards_client.close()


@pytest.fixture
def conn() -> Iterator[Connection]:
    """A database connection for a test's own reads, in autocommit."""
    with db.get_engine().connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


@pytest.fixture(autouse=True)
def clean_database() -> Iterator[None]:
    """Every integration test starts empty and ends with DESIGN.md section 5's invariants holding."""
    with db.transaction() as connection:
        truncate_tables(connection)
    yield
    with db.get_engine().connect() as connection:
        assert_invariants(connection)


def run(client: RewardsClient, task_name: str, **kwargs: Any) -> dict[str, Any]:
    """Send one job through the broker and wait for its JSON result."""
    return client.send(task_name, **kwargs).get(timeout=RESULT_TIMEOUT_S)


def run_all(client: RewardsClient, jobs: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Send every job at once, then collect the results in sending order."""
    sent = [client.send(name, **kwargs) for name, kwargs in jobs]
    return [result.get(timeout=RESULT_TIMEOUT_S) for result in sent]


def partner_row(conn: Connection, partner_id: int):
    return conn.execute(text("SELECT * FROM partner WHERE id = :id"), {"id": partner_id}).one()
