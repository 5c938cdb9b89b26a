"""Dead letters: failure records kept in Redis while PostgreSQL cannot take them.

A job that fails for a reason of its own is recorded in `job_failure`. When
the database is what failed (down, hung) that record cannot be written there,
and a worker's main process never writes to the database at all; the record
is kept here instead, in one Redis hash (id → JSON), and moved into
`job_failure` once PostgreSQL answers (`move_to_database`, run by
`rewards failures list|retry` and by the maintenance job
`rewards.maintenance.relay_outbox` on every run).

Moving is at least once: a crash between the database commit and the HDEL
moves the record again, which `job_failure`'s fingerprint turns into one more
`attempts` on the same row.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

import redis
from sqlalchemy import Engine

from rewards import redis_client
from rewards.ledger.failures import record_failure

HASH_KEY = "rewards:dead_letters"
# Every Redis call here is bounded: a failure handler must never hang a worker.
REDIS_TIMEOUT_S = 2.0
# Behind Sentinel, how long a dead letter waits for a replica (inside REDIS_TIMEOUT_S).
REPLICA_WAIT_MS = 1_000


@dataclass(frozen=True)
class DeadLetter:
    id: str
    task_name: str
    job_id: str | None
    payload: Any
    reason: str
    error: str
    failed_at: str

    @classmethod
    def new(cls, *, task_name: str, job_id: str | None, payload: Any, reason: str, error: str,
            now: datetime) -> DeadLetter:
        return cls(uuid.uuid4().hex, task_name, job_id, payload, reason, error[:10_000], now.isoformat())


def _client(url: str) -> redis.Redis:
    return redis_client.connect(url, timeout_s=REDIS_TIMEOUT_S)


def push(url: str, letter: DeadLetter) -> None:
    """Keep `letter` in Redis; raises redis.RedisError if Redis cannot take it either.

    Behind Sentinel the letter must reach a replica too (WAIT): replication
    is asynchronous, and a letter that only a lost master held would be a
    failed job nobody hears of.
    """
    client = _client(url)
    client.hset(HASH_KEY, letter.id, json.dumps(asdict(letter), default=str))
    if redis_client.is_sentinel(url) and client.wait(1, REPLICA_WAIT_MS) < 1:
        raise redis.RedisError(f"dead letter {letter.id} is on the master only: no replica took it "
                               f"within {REPLICA_WAIT_MS} ms")


def pending(url: str) -> list[DeadLetter]:
    """Every dead letter not yet moved into job_failure, oldest first."""
    raw = _client(url).hgetall(HASH_KEY)
    letters = [DeadLetter(**json.loads(value)) for value in raw.values()]
    return sorted(letters, key=lambda letter: letter.failed_at)


def move_to_database(url: str, engine: Engine) -> int:
    """Record every dead letter in job_failure, then drop it from Redis; returns how many moved."""
    client = _client(url)
    moved = 0
    for letter in pending(url):
        with engine.begin() as conn:
            record_failure(conn, task_name=letter.task_name, job_id=letter.job_id,
                           payload=letter.payload, reason=letter.reason, error=letter.error,
                           now=datetime.fromisoformat(letter.failed_at))
        client.hdel(HASH_KEY, letter.id)
        moved += 1
    return moved
