"""Every read path on both databases: leaderboards from SQL, analytics, badges, the check-in preview, the calendar.

The same known month (tests/support/read_side_data.py) is applied to the
suite's PostgreSQL and to a fresh SQLite file, and each test reads it from both.
"""

from __future__ import annotations

from datetime import date, datetime

import pytest

from rewards import analytics, db, leaderboards, queries
from rewards.db import make_engine
from rewards.models import metadata
from tests.support import read_side_data as data
from tests.support.invariants import assert_invariants


@pytest.fixture(params=["postgresql", "sqlite"])
def engine(request, tmp_path):
    if request.param == "postgresql":
        engine = db.get_engine()  # emptied before and checked after by clean_database
        data.populate(engine)
        yield engine
        return
    engine = make_engine(f"sqlite:///{tmp_path / 'rewards.sqlite3'}")
    metadata.create_all(engine)
    data.populate(engine)
    yield engine
    with engine.connect() as conn:
        assert_invariants(conn)
    engine.dispose()


@pytest.fixture
def conn(engine):
    with engine.connect() as connection:
        yield connection


def board(kind: str, week: str | None = None) -> leaderboards.Board:
    return leaderboards.board(kind, data.NOW, week)


def pairs(entries) -> list[tuple[int, int]]:
    return [(entry.partner_id, entry.score) for entry in entries]


@pytest.mark.parametrize(("kind", "week", "expected"), [
    ("xp", None, data.XP_BOARD), ("streak", None, data.STREAK_BOARD),
    ("weekly", None, data.WEEK_11_BOARD), ("weekly", "2026-W10", data.WEEK_10_BOARD),
])
def test_each_sql_board_ranks_higher_scores_first_then_who_got_there_first_then_the_lower_id(
        conn, kind, week, expected):
    entries = leaderboards.sql_top(conn, board(kind, week), 10)
    assert pairs(entries) == expected
    assert [entry.rank for entry in entries] == list(range(1, len(expected) + 1))
    assert pairs(leaderboards.sql_top(conn, board(kind, week), 2)) == expected[:2]


@pytest.mark.parametrize(("kind", "week", "expected"), [
    ("xp", None, data.XP_BOARD), ("streak", None, data.STREAK_BOARD),
    ("weekly", None, data.WEEK_11_BOARD), ("weekly", "2026-W10", data.WEEK_10_BOARD),
])
def test_a_partners_rank_and_neighbours_agree_with_the_top_of_the_board(conn, kind, week, expected):
    for index, (partner_id, score) in enumerate(expected):
        entry, view = leaderboards.rank_of(conn, board(kind, week), partner_id)
        assert (entry.rank, entry.partner_id, entry.score, view.source) == (index + 1, partner_id, score, "sql")
        around = leaderboards.sql_around(conn, board(kind, week), partner_id, 1)
        first = max(0, index - 1)
        assert pairs(around) == expected[first:index + 2]
        assert [e.rank for e in around] == list(range(first + 1, first + 1 + len(around)))
    assert leaderboards.sql_around(conn, board(kind, week), 7, 3) == []  # partner 7 never scored


def test_the_queries_leaderboard_is_the_same_sql_board(conn):
    rows = queries.leaderboard(conn, "xp", 3, at=data.NOW)
    assert [(row.rank, row.partner_id, row.score) for row in rows] == [(1, 8, 300), (2, 1, 230), (3, 3, 230)]


def test_the_profile_shows_the_badges_a_partner_earned(conn):
    found = queries.profile(conn, 1, at=data.NOW)
    assert [(badge.badge, badge.streak_days, badge.checkin_day) for badge in found.badges] == [
        ("consistency_champion", 7, date(2026, 3, 8))]
    assert queries.profile(conn, 4, at=data.NOW).badges == ()


def test_the_checkin_preview_is_what_the_checkin_then_pays(engine, conn):
    tomorrow = datetime.fromisoformat(data.at(8, 11))  # 10 March: partner 8's day 7, a PRO bonus day
    preview = queries.checkin_preview(conn, 8, at=tomorrow)
    assert (preview.day, preview.already_checked_in, preview.streak_days) == (date(2026, 3, 10), False, 7)
    assert (preview.base_xp, preview.bonus_xp, preview.multiplier, preview.xp_granted) == (10, 150, 5, 800)
    conn.rollback()
    paid = data.checkin(engine, 8, 8, hour=11)
    assert (paid["streak"], paid["bonus_xp"], paid["multiplier"], paid["xp_granted"]) == (7, 150, 5, 800)
    again = queries.checkin_preview(conn, 8, at=tomorrow)
    assert again.already_checked_in and again.xp_granted == 0


def test_the_checkin_preview_counts_a_pro_freeze_and_a_broken_streak(conn):
    two_days_on = datetime.fromisoformat(data.at(9, 12))  # partner 8 missed 10 March
    bridged = queries.checkin_preview(conn, 8, at=two_days_on)
    assert (bridged.streak_days, bridged.frozen_days, bridged.xp_granted) == (7, 1, 800)
    broken = queries.checkin_preview(conn, 4, at=two_days_on)  # regular: no freeze
    assert (broken.streak_days, broken.frozen_days, broken.xp_granted) == (1, 0, 10)
    newcomer = queries.checkin_preview(conn, 999, at=two_days_on)
    assert (newcomer.streak_days, newcomer.xp_granted) == (1, 10)


def test_the_calendar_tells_bonus_checked_in_frozen_missed_and_upcoming_days_apart(conn):
    days = {entry.day.day: entry.status for entry in queries.streak_calendar(conn, 2, "2026-03", at=data.NOW)}
    assert [days[day] for day in range(1, 12)] == [
        "missed", "checked_in", "checked_in", "checked_in", "frozen", "checked_in",
        "missed", "missed", "missed", "upcoming", "upcoming"]  # 10 March is today: still open
    first = {entry.day.day: entry for entry in queries.streak_calendar(conn, 1, date(2026, 3, 1), at=data.NOW)}
    assert (first[8].status, first[8].streak, first[8].xp_granted) == ("bonus", 7, 160)
    assert first[9].status == "checked_in" and first[10].status == "upcoming"


def test_the_report_counts_checkins_streaks_return_funnel_xp_and_plans(conn):
    found = analytics.report(conn, date(2026, 3, 2), date(2026, 3, 10), now=data.NOW)
    assert [(d.checkins, d.active_base) for d in found.daily] == [
        (2, 2), (2, 2), (3, 3), (2, 3), (3, 3), (2, 3), (4, 5), (4, 5), (0, 5)]
    assert found.daily[6].rate == pytest.approx(0.8)
    assert (found.streaks.partners, found.streaks.with_streak) == (8, 5)
    assert (found.streaks.average_days, found.streaks.median_days) == (4.4, 4.0)
    assert dict(found.streaks.distribution) == {"1 day": 0, "2-6 days": 4, "7-13 days": 1, "14-29 days": 0,
                                                "30-99 days": 0, "100+ days": 0}
    back = found.retention
    assert (back.new_partners, back.d1_returned, back.d1_measurable) == (5, 5, 5)
    assert (back.d7_returned, back.d7_measurable) == (1, 2)  # partner 8's day 7 is after the window
    funnel = {task.task_id: (task.started, task.completed, task.expired, task.in_progress) for task in found.funnel}
    assert funnel["telegram_bot"] == (1, 1, 0, 0) and funnel["banking_app"] == (1, 0, 0, 1)
    assert funnel["invite_10_friends"] == (0, 0, 0, 0)
    assert found.funnel[0].conversion == 1.0 and [t.task_id for t in found.popular][:1] == ["telegram_bot"]


def test_the_report_splits_xp_by_day_and_type_and_pro_from_regular(conn):
    found = analytics.report(conn, date(2026, 3, 2), date(2026, 3, 10), now=data.NOW)
    by_day = {day.day.day: day.by_type for day in found.xp_daily}
    assert by_day[2]["checkin"] == 10 + 50 and by_day[3]["task_reward"] == 100
    assert by_day[8]["streak_bonus"] == 150 and by_day[10]["adjustment"] == 230
    assert sum(day.total for day in found.xp_daily) == sum(score for _, score in data.XP_BOARD)
    pro, regular = found.segments
    assert (pro.name, pro.partners, pro.checkins, pro.xp_issued) == ("PRO", 2, 10, 500)
    assert (regular.partners, regular.checkins, regular.xp_issued) == (6, 12, 600)
    assert pro.checkin_rate(found.days) == pytest.approx(10 / 18)


def test_a_window_of_days_ends_today_and_refuses_nonsense():
    assert analytics.window(7, date(2026, 3, 10)) == (date(2026, 3, 4), date(2026, 3, 10))
    with pytest.raises(ValueError, match="days must be from 1 to 366"):
        analytics.window(0)
