"""Random sets of one partner's jobs, and what they leave behind: for convergence tests.

A job set is check-ins on random days of a fortnight (with gaps) and PRO
changes starting and ending spans, some sent twice. Applied to one partner in
`occurred_at` order and to another in a shuffled order, both partners must
end in the same `snapshot`.
"""

from __future__ import annotations

import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Connection, text

from rewards import contract, db
from rewards.contract.payloads import CheckinJob, PartnerUpdateJob
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.partners import apply_partner_update
from rewards.rules import Policy

FIRST_DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)


@dataclass(frozen=True)
class Job:
    """One job of the set: a check-in, or a PRO change (pro_until None ends PRO)."""

    task_name: str
    occurred_at: datetime
    pro_until: datetime | None = None

    def kwargs(self, partner_id: int) -> dict[str, Any]:
        kwargs = {"partner_id": partner_id, "occurred_at": self.occurred_at.isoformat()}
        if self.task_name == contract.PARTNER_UPDATE:
            kwargs["pro_until"] = self.pro_until.isoformat() if self.pro_until else None
        return kwargs


def random_jobs(rng: random.Random, span_days: int) -> list[Job]:
    """Check-ins on a random subset of `span_days` days, 0-3 PRO changes, ~15% sent twice."""
    def instant(day: int) -> datetime:
        return FIRST_DAY + timedelta(days=day, minutes=rng.randrange(8 * 60, 20 * 60))

    days = sorted(rng.sample(range(span_days), rng.randint(1, span_days)))
    jobs = [Job(contract.CHECKIN, instant(day)) for day in days]
    for _ in range(rng.randint(0, 3)):
        starts = instant(rng.randrange(-1, span_days))
        ends = None if rng.random() < 0.3 else starts + timedelta(days=rng.randint(1, span_days))
        jobs.append(Job(contract.PARTNER_UPDATE, starts, ends))
    jobs += [job for job in jobs if rng.random() < 0.15]
    return jobs


def apply(partner_id: int, job: Job, policy: Policy) -> None:
    """Apply one job to one partner in its own transaction, as a worker does (the clock well after it)."""
    now = job.occurred_at + timedelta(days=30)
    with db.transaction() as conn:
        if job.task_name == contract.CHECKIN:
            apply_checkin(conn, CheckinJob.model_validate(job.kwargs(partner_id)), policy, now=now,
                          future_tolerance=timedelta(0))
        else:
            apply_partner_update(conn, PartnerUpdateJob.model_validate(job.kwargs(partner_id)), policy, now=now,
                                 future_tolerance=timedelta(0))


def in_order(jobs: list[Job]) -> list[Job]:
    return sorted(jobs, key=lambda job: job.occurred_at)


def snapshot(conn: Connection, partner_id: int) -> dict[str, Any]:
    """Everything order must not change: balance, streak state, each day, badges, freezes, ledger per day."""
    state = conn.execute(text(
        "SELECT xp, checkin_streak, longest_streak, total_checkins, last_checkin_day FROM partner WHERE id = :p"),
        {"p": partner_id}).one()
    days = conn.execute(text(
        "SELECT day, streak, frozen_days, base_xp, bonus_xp, multiplier, xp_granted, xp_shortfall "
        "FROM checkin WHERE partner_id = :p ORDER BY day"), {"p": partner_id}).fetchall()
    ledger_by_day: dict[str, int] = defaultdict(int)
    for key, amount in conn.execute(text(
            "SELECT idempotency_key, amount FROM xp_ledger WHERE partner_id = :p"), {"p": partner_id}):
        ledger_by_day[key.split(":")[2]] += amount
    return {
        "partner": tuple(state),
        "days": [tuple(row) for row in days],
        "ledger_by_day": dict(ledger_by_day),
        "badges": sorted(conn.execute(text("SELECT badge FROM partner_badge WHERE partner_id = :p"),
                                      {"p": partner_id}).scalars()),
        "freezes": sorted(tuple(row) for row in conn.execute(text(
            "SELECT iso_week, frozen_day, checkin_day FROM streak_freeze WHERE partner_id = :p"),
            {"p": partner_id})),
    }
