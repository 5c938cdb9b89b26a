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
from celery.contrib.testing.worker import start_worker
from sqlalchemy import Connection

from rewards import contract, db
from rewards.client import RewardsClient
from tests.support.database import (
    admin_engine,
    admin_transaction,
    flush_leaderboards,
    flush_redis_test_databases,
    truncate_tables,
)
from tests.support.invariants import assert_invariants
from tests.support.oracle import assert_agrees_with_model
from workers import app


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


@pytest.fixture
def admin_conn() -> Iterator[Connection]:
    """The database owner's connection, in autocommit: for what a test does that no job may
    (editing ledger rows by hand, adding a trigger); the suite itself runs as the worker's role."""
    with admin_engine().connect() as connection:
        yield connection.execution_options(isolation_level="AUTOCOMMIT")


@pytest.fixture(autouse=True)
def clean_database(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every integration test starts empty and ends with DESIGN.md section 5's invariants holding
    and every partner's figures agreeing with the reference model (tests/support/oracle.py)."""
    with admin_transaction() as connection:
        truncate_tables(connection)
    flush_leaderboards()
    yield
    with db.get_engine().connect() as connection:
        assert_invariants(connection)
        exempt = outside_the_model(request)
        if exempt is not None:
            assert_agrees_with_model(connection, exempt)


def outside_the_model(request: pytest.FixtureRequest) -> set[int] | None:
    """The partners a test declared outside the model's scope; None when it declared all of them."""
    marker = request.node.get_closest_marker("outside_the_model")
    if marker is None:
        return set()
    assert marker.kwargs.get("reason"), "outside_the_model needs a reason= saying what the model cannot see"
    partners = marker.kwargs.get("partners")
    return None if partners is None else set(partners)
