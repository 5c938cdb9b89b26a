"""One small, known month for the read-side tests, applied straight to an engine (PostgreSQL or SQLite).

The jobs go through the same apply_* functions the workers call, one
transaction each, with the clock fixed at NOW (Tuesday 10 March 2026, ISO
week 2026-W11; the week before is 2026-W10, Monday 2 to Sunday 8 March).

    partner 1  regular, checks in 2-9 March at 09:00         streak 8, 230 XP, badge at day 7
    partner 2  PRO, 2, 3, 4 and 6 March at 09:00             the freeze bridges 5 March: streak 4, 200 XP
    partner 3  an operator grants 230 XP at NOW              ties partner 1, who got there first
    partner 4  8 and 9 March at 09:30                        streak 2, 20 XP
    partner 5  the same minutes as partner 4                 tied with 4 to the minute: the lower id leads
    partner 6  telegram_bot claimed (100 XP); banking_app and invite_3_friends left open
    partner 7  community_chat started
    partner 8  PRO, 4-9 March at 10:00                       streak 6, 300 XP: a check-in on 10 March is day 7
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine

from rewards import catalog
from rewards.contract.payloads import (
    AdjustmentJob,
    CheckinJob,
    PartnerUpdateJob,
    TaskClaimJob,
    TaskStartJob,
)
from rewards.ledger.adjustments import apply_adjustment
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.partners import apply_partner_update
from rewards.ledger.quests import apply_task_claim, apply_task_start
from rewards.rules import Policy

MARCH_2 = datetime(2026, 3, 2, tzinfo=timezone.utc)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=timezone.utc)
TOLERANCE = timedelta(minutes=5)
POLICY = Policy()
CATALOG = catalog.load()
PRO_UNTIL = "2030-01-01T00:00:00+00:00"

XP_BOARD = [(8, 300), (1, 230), (3, 230), (2, 200), (6, 100), (4, 20), (5, 20)]
STREAK_BOARD = [(1, 8), (8, 6), (2, 4), (4, 2), (5, 2)]
WEEK_11_BOARD = [(3, 230), (8, 50), (1, 10), (4, 10), (5, 10)]
WEEK_10_BOARD = [(8, 250), (1, 220), (2, 200), (6, 100), (4, 10), (5, 10)]


def at(day: int, hour: int = 9, minute: int = 0) -> str:
    """An instant on March 2 + day."""
    return (MARCH_2 + timedelta(days=day, hours=hour, minutes=minute)).isoformat()


def _apply(engine: Engine, function, job, **options) -> dict:
    with engine.begin() as conn:
        result = function(conn, job, now=NOW, **options).as_result()
    assert result["status"] == "applied", result
    return result


def checkin(engine: Engine, partner_id: int, day: int, hour: int = 9, minute: int = 0) -> dict:
    job = CheckinJob(partner_id=partner_id, occurred_at=at(day, hour, minute))
    return _apply(engine, apply_checkin, job, policy=POLICY, future_tolerance=TOLERANCE)


def populate(engine: Engine) -> None:
    for pro in (2, 8):
        _apply(engine, apply_partner_update,
               PartnerUpdateJob(partner_id=pro, occurred_at=at(-30), pro_until=PRO_UNTIL), policy=POLICY,
               future_tolerance=TOLERANCE)
    for day in range(8):
        checkin(engine, 1, day)
    for day in (0, 1, 2, 4):
        checkin(engine, 2, day)
    _apply(engine, apply_adjustment, AdjustmentJob(partner_id=3, amount=230, reason="goodwill", request_id="r-3"))
    for partner_id in (4, 5):
        for day in (6, 7):
            checkin(engine, partner_id, day, minute=30)
    _tasks(engine)
    for day in range(2, 8):
        checkin(engine, 8, day, hour=10)


def _tasks(engine: Engine) -> None:
    def start(partner_id: int, task_id: str, day: int) -> None:
        _apply(engine, apply_task_start, TaskStartJob(partner_id=partner_id, task_id=task_id, occurred_at=at(day)),
               catalog=CATALOG, future_tolerance=TOLERANCE)

    start(6, "telegram_bot", 0)
    start(6, "banking_app", 0)
    start(6, "invite_3_friends", 1)
    _apply(engine, apply_task_claim, TaskClaimJob(partner_id=6, task_id="telegram_bot", occurred_at=at(1)),
           catalog=CATALOG, policy=POLICY, future_tolerance=TOLERANCE)
    start(7, "community_chat", 2)
