"""Streak badges: awarded once per partner, in the check-in's transaction, with an event."""

from datetime import date, timedelta

from rewards import contract
from rewards.ledger.badges import badges_of
from tests.support.jobs import run_all
from tests.support.streaks import checkin, events, noon

START = date(2026, 3, 1)


def test_the_seventh_checkin_delivered_twice_awards_consistency_champion_once(client, conn):
    for offset in range(6):
        checkin(client, 50, START + timedelta(days=offset))
    seventh = (contract.CHECKIN, {"partner_id": 50, "occurred_at": noon(START + timedelta(days=6))})
    results = run_all(client, [seventh] * 4)
    assert sorted(r["status"] for r in results) == ["applied", "duplicate", "duplicate", "duplicate"]
    assert [b.badge for b in badges_of(conn, 50)] == ["consistency_champion"]
    [awarded] = events(conn, "badge.awarded", 50)
    assert awarded.payload == {"badge": "consistency_champion", "streak": 7, "day": "2026-03-07"}


def test_thirty_days_add_elite_operator_and_a_milestone_every_seven(client, conn):
    for offset in range(30):
        checkin(client, 51, START + timedelta(days=offset))
    held = badges_of(conn, 51)
    assert [(b.badge, b.streak_days, b.checkin_day) for b in held] == [
        ("consistency_champion", 7, date(2026, 3, 7)),
        ("elite_operator", 30, date(2026, 3, 30)),
    ]
    milestones = events(conn, "checkin.milestone", 51)
    assert [e.payload["streak"] for e in milestones] == [7, 14, 21, 28]
    assert milestones[0].payload == {"streak": 7, "day": "2026-03-07", "bonus_xp": 150, "multiplier": 1,
                                     "xp_granted": 160}


def test_a_streak_reaching_seven_again_does_not_award_it_again(client, conn):
    for offset in list(range(7)) + list(range(9, 16)):   # a week, a gap, another week
        checkin(client, 52, START + timedelta(days=offset))
    assert [b.badge for b in badges_of(conn, 52)] == ["consistency_champion"]
    assert len(events(conn, "badge.awarded", 52)) == 1
    assert len(events(conn, "checkin.milestone", 52)) == 2


def test_a_partner_without_badges_has_an_empty_list(conn):
    assert badges_of(conn, 53) == []
