"""The `job_failure` table: jobs that could not be applied, so nothing is dropped silently.

A poison payload or a job that ran out of retries is recorded once per
distinct (task, payload); further deliveries of it bump `attempts`. Whatever
a producer sent can be recorded: `payload` holds it with every string made
storable (NUL and lone surrogates escaped) and `payload_text` its exact JSON
form, so a failure row can never fail to be written because of its payload.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from datetime import datetime
from typing import Any

from sqlalchemy import Connection

from rewards.db import insert_on_conflict
from rewards.models import job_failure

# Bounds on what one failure row holds: a poison payload of any size or
# shape is recorded, cut to these limits, never refused by the database.
MAX_PAYLOAD_TEXT_CHARS = 100_000
MAX_PAYLOAD_JSON_CHARS = 64_000
MAX_PAYLOAD_DEPTH = 32
MAX_ERROR_CHARS = 10_000
# Column widths of job_failure (rewards.models).
MAX_TASK_NAME_CHARS = 200
MAX_JOB_ID_CHARS = 64
# PostgreSQL text and JSON cannot hold NUL, and UTF-8 cannot encode a lone
# surrogate (which a JSON producer can send as "\ud800").
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def escape_text(text: str) -> str:
    """`text` with each character PostgreSQL cannot store written as a `\\uXXXX` escape."""
    return _UNSTORABLE.sub(lambda found: f"\\u{ord(found.group()):04x}", text)


def payload_text(payload: Any) -> str:
    """The payload exactly as received, as ASCII JSON text (escapes keep NUL, surrogates, NaN)."""
    try:
        return json.dumps(payload, sort_keys=True, default=repr)
    except (TypeError, ValueError, RecursionError) as error:
        return f"<payload not representable as JSON: {type(error).__name__}: {escape_text(str(error))[:200]}>"


def sanitise(value: Any, depth: int = 0) -> Any:
    """A JSON value PostgreSQL can store: strings escaped, odd numbers and foreign types as text."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        # jsonb holds about 131,072 digits; Python refuses to print more than 4,300.
        return value if value.bit_length() <= 1_000 else f"<integer of {value.bit_length()} bits>"
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if isinstance(value, str):
        return escape_text(value)
    if depth >= MAX_PAYLOAD_DEPTH:
        return f"<nested deeper than {MAX_PAYLOAD_DEPTH} levels>"
    if isinstance(value, dict):
        return {escape_text(str(key)): sanitise(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [sanitise(item, depth + 1) for item in value]
    return escape_text(repr(value)[:2_000])


def stored_payload(payload: Any) -> tuple[Any, str]:
    """(the payload for the JSON column, the raw form for the text column), both always storable."""
    raw = payload_text(payload)
    sanitised = sanitise(payload)
    if len(json.dumps(sanitised)) > MAX_PAYLOAD_JSON_CHARS:
        sanitised = {"too_large": f"{len(raw):,} characters as JSON; see payload_text"}
    return sanitised, escape_text(raw[:MAX_PAYLOAD_TEXT_CHARS])


def fingerprint(task_name: str, payload: Any) -> str:
    try:
        canonical = json.dumps([task_name, payload], sort_keys=True, default=str)
    except (TypeError, ValueError, RecursionError):
        canonical = json.dumps([task_name, payload_text(payload)])
    return hashlib.sha256(canonical.encode("utf-8", "surrogatepass")).hexdigest()


def record_failure(conn: Connection, *, task_name: str, job_id: str | None, payload: Any,
                   reason: str, error: str, now: datetime) -> None:
    sanitised, raw = stored_payload(payload)
    statement = insert_on_conflict(job_failure).values(
        fingerprint=fingerprint(task_name, payload),
        task_name=escape_text(task_name)[:MAX_TASK_NAME_CHARS],
        job_id=None if job_id is None else escape_text(str(job_id))[:MAX_JOB_ID_CHARS],
        payload=sanitised,
        payload_text=raw,
        reason=reason,
        error=escape_text(error)[:MAX_ERROR_CHARS],
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
            "job_id": statement.excluded.job_id,
        },
    )
    conn.execute(statement)
