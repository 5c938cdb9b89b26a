"""The read side: profile, task previews, history, calendar and leaderboards from the real database."""

from datetime import date, datetime

import pytest

from rewards import queries
from tests.support.jobs import (
    START,
    adjust,
    at,
    checkin,
    claim,
    make_pro,
    refer_friends,
    start,
)


def claim_instant(days: float) -> datetime:
    return datetime.fromisoformat(at(days))


def preview(conn, partner_id: int, task_id: str, days: float) -> queries.TaskView:
    views = {view.task_id: view for view in queries.tasks(conn, partner_id, at=claim_instant(days))}
    return views[task_id]


@pytest.mark.parametrize("pro", [False, True], ids=["regular", "pro"])
@pytest.mark.parametrize(("task_id", "base_xp"), [("invite_3_friends", 500), ("telegram_bot", 100),
                                                  ("daily_checkin_5", 250)])
def test_the_reward_preview_is_what_the_claim_then_pays(client, conn, pro, task_id, base_xp):
    partner_id = 700 + (1 if pro else 0)
    if pro:
        make_pro(client, partner_id)
    start(client, partner_id, task_id)
    refer_friends(client, partner_id, range(7001, 7004))
    for day in range(5):
        checkin(client, partner_id, day)

    shown = preview(conn, partner_id, task_id, days=5)
    paid = claim(client, partner_id, task_id, day=5)

    assert shown.claimable and shown.status == "STARTED"
    assert paid["status"] == "applied"
    assert shown.xp_on_claim == paid["xp_granted"] == base_xp * (5 if pro else 1)
    assert preview(conn, partner_id, task_id, days=5).status == "COMPLETED"


def test_the_task_list_shows_every_catalogue_task_with_its_progress(client, conn):
    start(client, 710, "invite_3_friends")
    refer_friends(client, 710, range(7101, 7103))
    views = queries.tasks(conn, 710, at=claim_instant(1))

    assert [view.task_id for view in views][:4] == ["telegram_bot", "banking_app", "community_chat",
                                                    "ambassador_hub"]
    assert len(views) == 9
    invite = next(view for view in views if view.task_id == "invite_3_friends")
    assert (invite.status, str(invite.progress), invite.claimable, invite.xp_on_claim) == (
        "STARTED", "2/3", False, 500)
    ten = next(view for view in views if view.task_id == "invite_10_friends")
    assert (ten.status, str(ten.progress)) == ("NOT_STARTED", "0/10")  # starting now counts from now


def test_a_profile_reports_balance_streaks_referrals_and_plan(client, conn):
    make_pro(client, 720)
    for day in (0, 1, 2, 5):  # two days missed: more than a PRO streak freeze bridges
        checkin(client, 720, day)
    refer_friends(client, 720, range(7201, 7203))
    found = queries.profile(conn, 720, at=START)
    assert (found.xp, found.checkin_streak, found.longest_streak, found.total_checkins) == (200, 1, 3, 4)
    assert (found.referral_count, found.pro, found.timezone) == (2, True, "UTC")
    with pytest.raises(queries.UnknownPartner, match="no partner 729"):
        queries.profile(conn, 729)


def test_history_lists_ledger_rows_newest_first_with_descriptions(client, conn):
    adjust(client, 730, 40, "grant-730", reason="welcome gift")
    checkin(client, 730, 0)
    start(client, 730, "banking_app")
    claim(client, 730, "banking_app")
    rows = queries.history(conn, 730, limit=2)
    assert [(row.entry_type, row.amount, row.balance_after) for row in rows] == [
        ("task_reward", 150, 200), ("checkin", 10, 50)]
    assert "Open the banking app" in rows[0].description
    assert len(queries.history(conn, 730)) == 3


def test_the_streak_calendar_marks_checkins_misses_and_the_seventh_day(client, conn):
    for day in [0, 1, 2, 3, 4, 5, 6, 8]:  # 2 to 8 March, then 10 March
        checkin(client, 740, day)
    days = {entry.day: entry for entry in queries.streak_calendar(conn, 740, "2026-03")}
    assert len(days) == 31
    assert days[date(2026, 3, 8)].checked_in and days[date(2026, 3, 8)].milestone
    assert days[date(2026, 3, 8)].streak == 7
    assert not days[date(2026, 3, 9)].checked_in and not days[date(2026, 3, 1)].checked_in
    assert days[date(2026, 3, 10)].streak == 1
    assert [entry.day.day for entry in days.values() if entry.milestone] == [8]


def test_the_xp_leaderboard_breaks_ties_by_who_reached_the_score_first_then_by_id(client, conn):
    adjust(client, 750, 200, "a")
    for partner_id, second_day in ((751, 1), (752, 1 - 1 / 24), (753, 1)):  # 752: an hour earlier
        checkin(client, partner_id, 0)
        checkin(client, partner_id, second_day)
    # 751 and 753 reached 20 XP in the same minute: the lower id leads.
    board = queries.leaderboard(conn, "xp", limit=10)
    assert [(row.rank, row.partner_id, row.score) for row in board] == [
        (1, 750, 200), (2, 752, 20), (3, 751, 20), (4, 753, 20)]
    assert [row.partner_id for row in queries.leaderboard(conn, "xp", limit=2)] == [750, 752]


def test_the_streak_leaderboard_ranks_the_earlier_checkin_first_on_a_tie(client, conn):
    for day in (0, 1, 2):
        checkin(client, 760, day)
    for day in (1.2, 2.2):
        checkin(client, 761, day)
    for day in (1.1, 2.1):
        checkin(client, 762, day)
    board = queries.leaderboard(conn, "streak")
    assert [(row.partner_id, row.score) for row in board] == [(760, 3), (762, 2), (761, 2)]


def test_a_read_from_the_primary_says_so_and_carries_no_replay_time(conn):
    # A standby's side (from_standby with the replayed commit's time) is read by the failover run's
    # reader, against Patroni's standbys: tests/system/test_failover.py.
    assert queries.freshness(conn) == queries.Freshness(from_standby=False, as_of=None)
