"""The test database and Redis numbers: emptying them, and reading rows back."""

from __future__ import annotations

import redis
from sqlalchemy import Connection, text

from rewards import settings as settings_module

TABLES = ("outbox", "partner_badge", "streak_freeze", "plan_change", "maintenance_checkpoint",
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


def truncate_tables(conn: Connection) -> None:
    conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))


def partner_row(conn: Connection, partner_id: int):
    return conn.execute(text("SELECT * FROM partner WHERE id = :id"), {"id": partner_id}).one()


def count(conn: Connection, sql: str, **params) -> int:
    return conn.execute(text(f"SELECT COUNT(*) FROM {sql}"), params).scalar_one()
