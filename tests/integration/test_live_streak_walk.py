"""Streak expiry and the at-risk notice keep up when live streaks outnumber what one run examines.

Forty partners with a live streak, a run examining at most ten (batch size 5,
two batches): the lowest ids are alive and need nothing, the highest are due.
A walk that looked at every live streak from the lowest id would spend every
run on the alive ones and never reach the due ones above them.
"""

from datetime import date, datetime, timedelta, timezone
from math import ceil

from sqlalchemy import text

from rewards import db
from schedules import expire_streaks, streak_risk
from tests.support.jobs import RESULT_TIMEOUT_S
from tests.support.streaks import events, noon

UTC = timezone.utc
BATCH_SIZE, MAX_BATCHES = 5, 2
ALIVE_IDS, DUE_IDS = range(1, 26), range(26, 41)
# Enough runs to examine every due partner once at ten a run, and one more:
# a walk that reaches them resets them in the first two.
RUNS = ceil(len(DUE_IDS) / (BATCH_SIZE * MAX_BATCHES)) + 1


def check_in(client, days_by_partner: dict[int, date]) -> None:
    """One check-in per partner, sent as check-in batches through the worker."""
    sent = client.checkin_many([(partner_id, noon(day)) for partner_id, day in days_by_partner.items()])
    for result in sent:
        outcome = result.get(timeout=RESULT_TIMEOUT_S)
        assert outcome["applied"] == len(outcome["items"]), outcome


def hourly(job, first_run_at: datetime) -> list:
    """`RUNS` runs of a maintenance job an hour apart, as beat sends them."""
    return [job(first_run_at + timedelta(hours=hour)) for hour in range(RUNS)]


def streaks(conn, partner_ids: range) -> list[int]:
    rows = conn.execute(text("SELECT checkin_streak FROM partner WHERE id >= :low AND id <= :high ORDER BY id"),
                        {"low": partner_ids[0], "high": partner_ids[-1]}).scalars().all()
    return list(rows)


def test_expiry_resets_every_lost_streak_above_more_alive_ones_than_a_run_examines(client, conn):
    tuesday_1am = datetime(2026, 1, 20, 1, tzinfo=UTC)
    check_in(client, {**{pid: date(2026, 1, 19) for pid in ALIVE_IDS},   # yesterday: alive
                      **{pid: date(2026, 1, 17) for pid in DUE_IDS}})    # Sunday and Monday missed

    runs = hourly(lambda now: expire_streaks.run(db.get_engine(), now, BATCH_SIZE, MAX_BATCHES),
                  tuesday_1am)

    assert streaks(conn, DUE_IDS) == [0] * len(DUE_IDS)
    assert streaks(conn, ALIVE_IDS) == [1] * len(ALIVE_IDS)
    assert sorted(e.partner_id for e in events(conn, "streak.lost")) == list(DUE_IDS)
    assert sum(run.changed for run in runs) == len(DUE_IDS)
    assert runs[-1].more is False


def test_every_partner_at_risk_is_warned_above_more_safe_ones_than_a_run_examines(client, conn):
    tuesday_8pm = datetime(2026, 1, 20, 20, tzinfo=UTC)
    check_in(client, {**{pid: date(2026, 1, 20) for pid in ALIVE_IDS},   # checked in today: safe
                      **{pid: date(2026, 1, 19) for pid in DUE_IDS}})    # not yet today: at risk

    runs = hourly(lambda now: streak_risk.run(db.get_engine(), now, BATCH_SIZE, 20, MAX_BATCHES),
                  tuesday_8pm)

    assert sorted(e.partner_id for e in events(conn, "streak.at_risk")) == list(DUE_IDS)
    assert sum(run.changed for run in runs) == len(DUE_IDS)
    # Still more to read: partners at risk stay so until they check in, and
    # each run of the evening reads them again (the notice's key holds it to one).
    assert [run.examined for run in runs] == [BATCH_SIZE * MAX_BATCHES] * RUNS
