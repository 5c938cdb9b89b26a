"""Applying a partner update (PRO until, time zone): last write by occurred_at wins.

Each field remembers when upstream set it, so an older update that arrives
late does not overwrite a newer value, field by field, and a replay of the
same update is a duplicate. Two different values stamped the same instant
settle by `rules.holds_at_same_instant`, never by which arrived first.

A PRO change is also history (rewards.ledger.plans): even when a newer one
already set the plan in force, an older change still decides PRO for the
instants it covers. So every new change re-prices the partner's check-ins
and claims from its instant on, inside the late window, with correction rows
(rewards.ledger.repricing). A time-zone change applies to check-ins
processed after it and never moves a paid day (DESIGN.md section 6a).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select, update

from rewards import rules
from rewards.contract import keys
from rewards.contract.payloads import PartnerUpdateJob
from rewards.contract.results import SUPERSEDED, Outcome, PartnerUpdateResult, in_future
from rewards.ledger import balance, plans, repricing
from rewards.models import checkin, partner
from rewards.rules import Policy

# The first check-in a PRO change at `since` could re-price (inside the window).
_first_day_since = select(func.min(checkin.c.day)).where(
    checkin.c.partner_id == bindparam("partner_id"), checkin.c.occurred_at >= bindparam("since"),
    checkin.c.day >= bindparam("window_start"))


def apply_partner_update(conn: Connection, job: PartnerUpdateJob, policy: Policy, *, now: datetime,
                         future_tolerance: timedelta) -> Outcome:
    key = keys.partner_update_key(job.partner_id, job.occurred_at)
    # An update stamped far ahead would win every "last write" comparison for
    # that partner until its date: it is refused, not applied.
    refusal = in_future(job.occurred_at, now, future_tolerance, key=key, partner_id=job.partner_id)
    if refusal is not None:
        return refusal
    state = balance.lock_partner(conn, job.partner_id, now)
    requested = {}
    if job.sets_pro_until:
        requested["pro_until"] = job.pro_until
    if job.sets_timezone:
        requested["timezone"] = job.timezone
    plan = plans.record(conn, job.partner_id, job.occurred_at, job.pro_until, now) if job.sets_pro_until else None
    new_plan = plan == "new"

    changes: dict[str, Any] = {}
    superseded: list[str] = []
    for field, value in requested.items():
        # The plan history has decided a PRO change at an instant it already holds.
        verdict = plan if field == "pro_until" and plan in ("replay", "superseded") else _verdict(
            state, field, value, job.occurred_at)
        if verdict == "apply":
            changes[field] = value
            changes[f"{field}_set_at"] = job.occurred_at
        elif verdict == "superseded":
            superseded.append(field)
    if changes:
        conn.execute(update(partner).where(partner.c.id == job.partner_id).values(**changes, updated_at=now))
    corrections = _reprice(conn, state, job, policy, now) if new_plan else []
    if changes or new_plan:
        applied = {field: _jsonable(changes[field]) for field in requested if field in changes}
        balance.audit(conn, "partner.updated", job.partner_id, {
            "changed": applied, "superseded": superseded, "occurred_at": job.occurred_at.isoformat(),
            "repriced": [correction.key for correction in corrections],
        }, now)
        return Outcome.applied(key, PartnerUpdateResult(job.partner_id, changed=applied, superseded=superseded,
                                                        corrections=corrections or None))
    if superseded:
        newer = {field: getattr(state, f"{field}_set_at").isoformat() for field in superseded}
        return Outcome.rejected(
            SUPERSEDED,
            f"a newer update, or another one stamped the same instant, already set {', '.join(superseded)};"
            " nothing changed",
            key=key, partner_id=job.partner_id, set_at=newer,
        )
    return Outcome.duplicate(key, PartnerUpdateResult(
        job.partner_id, changed={field: _jsonable(value) for field, value in requested.items()}))


def _reprice(conn: Connection, state: Row, job: PartnerUpdateJob, policy: Policy, now: datetime) -> list:
    """Re-price what the new plan change covers: check-ins and claims from its instant on."""
    window_start = repricing.window_start(state.last_checkin_day, policy)
    cause = f"a PRO change at {job.occurred_at.isoformat()}"
    first_day = None
    if window_start is not None:
        first_day = conn.execute(_first_day_since, {"partner_id": state.id, "since": job.occurred_at,
                                                    "window_start": window_start}).scalar()
    found = repricing.Repricing()
    if first_day is not None:
        found = repricing.reprice_checkins(conn, state, first_day, policy=policy, cause=cause, now=now)
    repricing.reprice_claims(conn, state, job.occurred_at, window_start_day=window_start, policy=policy,
                             cause=cause, repricing=found)
    if found.entries or found.priced:
        repricing.post(conn, state, found, policy=policy, now=now, rule_version=policy.version,
                       occurred_at=job.occurred_at)
    return found.checkin_corrections + found.task_corrections


def _verdict(state: Row, field: str, value: Any, occurred_at: datetime) -> str:
    set_at = getattr(state, f"{field}_set_at")
    if set_at is None or occurred_at > set_at:
        return "apply"
    if occurred_at == set_at:
        current = getattr(state, field)
        if current == value:
            return "replay"
        if rules.holds_at_same_instant(value, current):
            return "apply"
    return "superseded"


def _jsonable(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value
