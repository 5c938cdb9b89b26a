"""The test database and Redis numbers: emptying them, and reading rows back.

The suite runs as the worker's role (REWARDS_DATABASE_URL); what no job may
do (TRUNCATE, back-dating or corrupting rows, reading catalogues) goes through
the owner's engine here, REWARDS_TEST_ADMIN_DATABASE_URL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache

import redis
from sqlalchemy import Connection, Engine, text

from rewards import db
from rewards import settings as settings_module

TABLES = ("xp_ledger_key", "outbox", "partner_badge", "streak_freeze", "plan_change", "maintenance_checkpoint", "maintenance_run",
          "job_failure", "audit_event", "xp_ledger", "adjustment", "referral", "partner_task",
          "checkin", "partner")


def flush_redis_test_databases() -> None:
    current = settings_module.get()
    for url in (current.broker_url, current.result_backend):
        redis.Redis.from_url(url).flushdb()


def flush_leaderboards() -> None:
    """Empty the leaderboard cache with the tables it caches: a board left by another run would be stale."""
    current = settings_module.get()
    if current.redis_url and current.redis_url not in (current.broker_url, current.result_backend):
        client = redis.Redis.from_url(current.redis_url)
        client.flushdb()
        client.close()


@lru_cache(maxsize=1)
def admin_engine() -> Engine:
    """The database owner's engine, for test set-up only; the main URL where none is set (SQLite, chaos)."""
    url = os.environ.get("REWARDS_TEST_ADMIN_DATABASE_URL") or settings_module.get().database_url
    return db.make_engine(url)


@contextmanager
def admin_transaction() -> Iterator[Connection]:
    """One transaction as the database owner: committed when the block ends."""
    with admin_engine().begin() as connection:
        yield connection


def truncate_tables(conn: Connection) -> None:
    """Empty every table; TRUNCATE is no job's right, so `conn` is the owner's (admin_transaction)."""
    conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def partner_row(conn: Connection, partner_id: int):
    return conn.execute(text("SELECT * FROM partner WHERE id = :id"), {"id": partner_id}).one()


def count(conn: Connection, sql: str, **params) -> int:
    return conn.execute(text(f"SELECT COUNT(*) FROM {sql}"), params).scalar_one()
