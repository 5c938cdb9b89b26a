"""The `job_failure` table: jobs that could not be applied, so nothing is dropped silently.

A poison payload or a job that ran out of retries is recorded once per
distinct (task, payload); further deliveries of it bump `attempts`.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from rewards.db import insert_on_conflict
from rewards.models import job_failure


def fingerprint(task_name: str, payload: Any) -> str:
    canonical = json.dumps([task_name, payload], sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _jsonable_payload(payload: Any) -> Any:
    """The payload as JSON can hold it; anything else is kept as its repr."""
    try:
        return json.loads(json.dumps(payload))
    except (TypeError, ValueError):
        return {"unserialisable": repr(payload)[:2000]}


def record_failure(conn: Connection, *, task_name: str, task_id: str | None, payload: Any,
                   reason: str, error: str, now: datetime) -> None:
    statement = insert_on_conflict(job_failure).values(
        fingerprint=fingerprint(task_name, payload),
        task_name=task_name,
        task_id=task_id,
        payload=_jsonable_payload(payload),
        reason=reason,
        error=error[:10_000],
        attempts=1,
        first_seen_at=now,
        last_seen_at=now,
    )
    statement = statement.on_conflict_do_update(
        index_elements=["fingerprint"],
        set_={
            "attempts": job_failure.c.attempts + 1,
            "last_seen_at": statement.excluded.last_seen_at,
            "error": statement.excluded.error,
            "reason": statement.excluded.reason,
            "task_id": statement.excluded.task_id,
        },
    )
    conn.execute(statement)
