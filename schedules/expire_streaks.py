"""rewards.maintenance.expire_streaks: set a lost streak to 0 (hourly by default).

A streak is lost when a check-in in the partner's local today could no
longer continue it (`rules.streak_continues`, freeze considered): its last
check-in is before yesterday in the partner's own time zone, and no PRO
freeze bridges the gap. Each reset emits `streak.lost`.

The reset is a conditional UPDATE on the very `last_checkin_day` this run
read and a streak still above 0: a check-in that commits meanwhile moves
`last_checkin_day`, so the UPDATE matches nothing and never overwrites it.
A check-in that waits on the reset instead sees the streak at 0 and still
continues it if its own day allows (`streaks.next_streak`).

What a run costs: one index range per time zone, holding only the live
streaks whose last check-in is two or more local days back there (lost, or
alive on a PRO freeze), so it follows the streaks lost since the last run,
not the number of live ones. Each reset takes its row out of the range; a
run stopped at its batch limit leaves a checkpoint and the next carries on
from it (schedules/live_streaks.py).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta

from sqlalchemy import Connection, Engine, insert, tuple_, update

from rewards import contract
from rewards.contract import keys
from rewards.ledger import outbox
from rewards.models import audit_event, partner
from schedules import live_streaks
from schedules.runner import Summary, run_exclusively

JOB = contract.MAINTENANCE_EXPIRE_STREAKS


def run(engine: Engine, now: datetime, batch_size: int, max_batches: int = 1_000) -> Summary:
    """Reset every lost streak as of `now`, `batch_size` partners per transaction."""
    return run_exclusively(engine, JOB, now, lambda summary: _expire(engine, now, batch_size,
                                                                      max_batches, summary))


def _expire(engine: Engine, now: datetime, batch_size: int, max_batches: int, summary: Summary) -> None:
    live_streaks.in_batches(engine, summary, job=JOB, now=now, window=_lost_window, batch_size=batch_size,
                            max_batches=max_batches,
                            handle=lambda conn, standings: _reset_lost(conn, standings, now))


def _lost_window(zone_now: datetime) -> live_streaks.Window:
    """A streak can be lost in a zone once a whole local day has passed since its last check-in.

    Last checked in yesterday (local) is alive whatever the freeze; two days
    ago or earlier is lost unless a freeze bridges the one missed day, which
    `standings` decides.
    """
    return live_streaks.Window(date.min, zone_now.date() - timedelta(days=2))


def _reset_lost(conn: Connection, standings: list[live_streaks.Standing], now: datetime) -> int:
    lost = {s.partner.id: s for s in standings if not s.alive}
    if not lost:
        return 0
    as_read = [(partner_id, s.partner.last_checkin_day) for partner_id, s in lost.items()]
    reset = conn.execute(
        update(partner)
        .where(tuple_(partner.c.id, partner.c.last_checkin_day).in_(as_read), partner.c.checkin_streak > 0)
        .values(checkin_streak=0, updated_at=now)
        .returning(partner.c.id)
    ).scalars().all()
    payloads = {partner_id: _lost_payload(lost[partner_id]) for partner_id in reset}
    if payloads:
        conn.execute(insert(audit_event), [
            {"event_type": "streak.lost", "partner_id": partner_id, "payload": payload, "created_at": now}
            for partner_id, payload in payloads.items()
        ])
    outbox.emit_many(conn, [
        outbox.Event(outbox.STREAK_LOST, partner_id, payload,
                     key=keys.key(keys.STREAK_LOST_EVENT, partner_id=partner_id,
                                  day=payload["last_checkin_day"]))
        for partner_id, payload in payloads.items()
    ], now=now)
    return len(reset)


def _lost_payload(standing: live_streaks.Standing) -> dict:
    last_day: date = standing.partner.last_checkin_day
    return {
        "lost_streak": standing.partner.checkin_streak,
        "last_checkin_day": last_day.isoformat(),
        "local_day": standing.local_today.isoformat(),
        "missed_days": (standing.local_today - last_day - timedelta(days=1)).days,
    }
