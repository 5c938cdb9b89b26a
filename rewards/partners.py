"""Applying a partner update (PRO until, time zone): last write by occurred_at wins.

Each field remembers when upstream set it, so an older update that arrives
late changes nothing, field by field, and a replay of the same update is a
duplicate.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, update

from rewards import ledger
from rewards.jobs import PartnerUpdateJob
from rewards.models import partner
from rewards.outcome import SUPERSEDED, Outcome


def apply_partner_update(conn: Connection, job: PartnerUpdateJob, *, now: datetime) -> Outcome:
    state = ledger.lock_partner(conn, job.partner_id, now)
    key = f"partner_update:{job.partner_id}:{job.occurred_at.isoformat()}"
    requested = {}
    if job.sets_pro_until:
        requested["pro_until"] = job.pro_until
    if job.sets_timezone:
        requested["timezone"] = job.timezone

    changes: dict[str, Any] = {}
    superseded: list[str] = []
    for field, value in requested.items():
        verdict = _verdict(state, field, value, job.occurred_at)
        if verdict == "apply":
            changes[field] = value
            changes[f"{field}_set_at"] = job.occurred_at
        elif verdict == "superseded":
            superseded.append(field)

    if changes:
        conn.execute(update(partner).where(partner.c.id == job.partner_id).values(**changes, updated_at=now))
        applied = {field: _jsonable(changes[field]) for field in requested if field in changes}
        ledger.audit(conn, "partner.updated", job.partner_id, {
            "changed": applied, "superseded": superseded, "occurred_at": job.occurred_at.isoformat(),
        }, now)
        return Outcome.applied(key, partner_id=job.partner_id, changed=applied, superseded=superseded)
    if superseded:
        newer = {field: getattr(state, f"{field}_set_at").isoformat() for field in superseded}
        return Outcome.rejected(
            SUPERSEDED,
            f"a newer update already set {', '.join(superseded)}; nothing changed",
            key=key, partner_id=job.partner_id, set_at=newer,
        )
    return Outcome.duplicate(key, partner_id=job.partner_id,
                             changed={field: _jsonable(value) for field, value in requested.items()})


def _verdict(state: Row, field: str, value: Any, occurred_at: datetime) -> str:
    set_at = getattr(state, f"{field}_set_at")
    if set_at is None or occurred_at > set_at:
        return "apply"
    if occurred_at == set_at and getattr(state, field) == value:
        return "replay"
    return "superseded"


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
