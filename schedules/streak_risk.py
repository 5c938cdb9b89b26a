"""rewards.maintenance.streak_risk: warn partners whose streak ends tonight (hourly by default).

After STREAK_RISK_HOUR in the partner's own time zone, a partner with a live
streak who has not checked in during their local today gets one
`streak.at_risk` event. The outbox key `streak_risk:{partner}:{local day}`
makes it one per partner per local day, however many runs see them.

What a run costs: for each zone past its risk hour, one index range of the
partners whose last check-in was yesterday or the day before there (the only
ones who can be at risk); partners who checked in today are never read. A
partner stays at risk until they check in, so every run of the evening reads
them again and the key keeps the notice single. When they outnumber a run's
batches, the walk carries on from its checkpoint (schedules/live_streaks.py),
so each is warned within ceil(at risk / (batch size x max batches)) runs.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from rewards import contract
from rewards.contract import keys
from rewards.ledger import outbox
from schedules import live_streaks
from schedules.runner import Summary, run_exclusively

JOB = contract.MAINTENANCE_STREAK_RISK


def run(engine: Engine, now: datetime, batch_size: int, risk_hour: int,
        max_batches: int = 1_000) -> Summary:
    """Emit the day's at-risk notices due as of `now`, `batch_size` partners per transaction."""
    return run_exclusively(engine, JOB, now, lambda summary: _warn(engine, now, batch_size, risk_hour,
                                                                    max_batches, summary))


def _warn(engine: Engine, now: datetime, batch_size: int, risk_hour: int, max_batches: int,
          summary: Summary) -> None:
    def notify(conn, standings: list[live_streaks.Standing]) -> int:
        events = [_notice(s) for s in standings if _at_risk(s, risk_hour)]
        return len(outbox.emit_many(conn, events, now=now))

    live_streaks.in_batches(engine, summary, job=JOB, now=now,
                            window=lambda zone_now: _risk_window(zone_now, risk_hour),
                            batch_size=batch_size, max_batches=max_batches, handle=notify)


def _risk_window(zone_now: datetime, risk_hour: int) -> live_streaks.Window | None:
    """Past the risk hour, a streak is at risk if its last check-in was yesterday or the day before.

    Today's is safe; the day before yesterday's is alive only on a freeze
    (`standings` decides); anything older is already lost.
    """
    if zone_now.hour < risk_hour:
        return None
    today = zone_now.date()
    return live_streaks.Window(today - timedelta(days=2), today - timedelta(days=1))


def _at_risk(standing: live_streaks.Standing, risk_hour: int) -> bool:
    """Alive, no check-in yet in the local today, and late enough in it to say so."""
    return (standing.alive
            and standing.partner.last_checkin_day < standing.local_today
            and standing.local_now.hour >= risk_hour)


def _notice(standing: live_streaks.Standing) -> outbox.Event:
    row = standing.partner
    local_midnight = datetime.combine(standing.local_today + timedelta(days=1), datetime.min.time(),
                                      tzinfo=standing.local_now.tzinfo)
    return outbox.Event(outbox.STREAK_AT_RISK, row.id, {
        "streak": row.checkin_streak,
        "local_day": standing.local_today.isoformat(),
        "last_checkin_day": row.last_checkin_day.isoformat(),
        "timezone": row.timezone,
        # Whole minutes left to check in. Both ends go to UTC first: Python
        # subtracts two times of one zone as wall clocks, which is off by an
        # hour across a DST change.
        "minutes_left": int((local_midnight.astimezone(timezone.utc)
                             - standing.local_now.astimezone(timezone.utc)).total_seconds() // 60),
        # A PRO partner already living on this week's freeze has no second one.
        "on_freeze": (standing.local_today - row.last_checkin_day).days == 2,
    }, key=keys.key(keys.STREAK_RISK_EVENT, partner_id=row.id, day=standing.local_today))
