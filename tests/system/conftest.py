"""System tests: real `celery -A workers worker` processes, started, killed and restarted."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
import redis

from rewards import db
from tests.support.database import admin_transaction, flush_redis_test_databases, truncate_tables
from tests.support.invariants import assert_invariants


@pytest.fixture
def system_broker_url() -> Iterator[str]:
    """A Redis database no other worker of the suite consumes, emptied before and after."""
    url = os.environ.get("REWARDS_SYSTEM_BROKER_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(url).flushdb()
    yield url
    redis.Redis.from_url(url).flushdb()


@pytest.fixture
def clean_state() -> Iterator[None]:
    flush_redis_test_databases()
    with admin_transaction() as conn:
        truncate_tables(conn)
    yield
    with db.get_engine().connect() as conn:
        assert_invariants(conn)
