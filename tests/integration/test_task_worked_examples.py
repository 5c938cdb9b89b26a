"""Tasks worked through the real queue: the reference document's examples and its fixed flaws."""

from sqlalchemy import text

from tests.support.database import count, partner_row
from tests.support.jobs import (
    adjust,
    checkin,
    claim,
    make_pro,
    refer,
    refer_friends,
    start,
)


def test_the_reference_audit_example_pays_a_pro_partner_2500_xp_for_three_friends(client, conn):
    make_pro(client, 123)
    assert adjust(client, 123, 1_500, "opening-balance-123")["xp_after"] == 1_500
    assert start(client, 123, "invite_3_friends")["status"] == "applied"
    refer_friends(client, 123, range(9001, 9004))

    result = claim(client, 123, "invite_3_friends", day=1)

    assert result["status"] == "applied"
    assert (result["base_xp"], result["multiplier"], result["xp_granted"]) == (500, 5, 2_500)
    assert (result["xp_before"], result["xp_after"]) == (1_500, 4_000)
    payload = conn.execute(text(
        "SELECT payload FROM audit_event WHERE event_type = 'task_completion' AND partner_id = 123")).scalar_one()
    assert {k: payload[k] for k in ("event", "partner_id", "task_id", "xp_before", "xp_after", "xp_granted")} == {
        "event": "task_completion", "partner_id": 123, "task_id": "invite_3_friends",
        "xp_before": 1_500, "xp_after": 4_000, "xp_granted": 2_500,
    }
    assert payload["timestamp"] == "2026-03-03T09:00:00+00:00"
    assert partner_row(conn, 123).xp == 4_000


def test_a_claim_with_two_of_three_friends_waits_for_the_third(client, conn):
    start(client, 20, "invite_3_friends")
    refer_friends(client, 20, range(2001, 2003))

    early = claim(client, 20, "invite_3_friends")
    assert (early["status"], early["reason"], early["progress"]) == ("rejected", "requirement_not_met", "2/3")
    assert partner_row(conn, 20).xp == 0

    refer(client, 20, 2003)
    later = claim(client, 20, "invite_3_friends")
    assert later["status"] == "applied" and later["xp_granted"] == 500
    assert partner_row(conn, 20).xp == 500


def test_friends_referred_before_the_start_do_not_count(client):
    refer_friends(client, 21, range(2101, 2106))
    start(client, 21, "invite_3_friends")
    refer_friends(client, 21, range(2106, 2108))
    assert claim(client, 21, "invite_3_friends")["progress"] == "2/3"


def test_a_completed_task_claimed_again_is_a_duplicate_that_pays_nothing(client, conn):
    start(client, 22, "telegram_bot")
    first = claim(client, 22, "telegram_bot")
    again = claim(client, 22, "telegram_bot", day=2)
    assert first["status"] == "applied" and again["status"] == "duplicate"
    for field in ("key", "attempt", "xp_granted", "xp_after", "completed_at"):
        assert again[field] == first[field]
    assert partner_row(conn, 22).xp == 100
    assert count(conn, "xp_ledger WHERE partner_id = 22") == 1


def test_starting_a_started_task_is_a_duplicate_and_a_completed_one_is_refused(client, conn):
    first = start(client, 23, "banking_app")
    again = start(client, 23, "banking_app", day=1)
    assert again["status"] == "duplicate" and again["started_at"] == first["started_at"]
    claim(client, 23, "banking_app", day=1)
    after = start(client, 23, "banking_app", day=2)
    assert (after["status"], after["reason"]) == ("rejected", "already_completed")
    assert count(conn, "partner_task WHERE partner_id = 23") == 1


def test_claiming_a_task_never_started_is_refused_and_writes_nothing(client, conn):
    result = claim(client, 24, "ambassador_hub")
    assert (result["status"], result["reason"]) == ("rejected", "not_started")
    assert count(conn, "partner WHERE id = 24") == 0


def test_an_unknown_task_is_refused_by_name(client, conn):
    for job in (start, claim):
        result = job(client, 25, "invite_7_friends")
        assert (result["status"], result["reason"]) == ("rejected", "unknown_task")
        assert "invite_7_friends" in result["message"]
    assert count(conn, "partner WHERE id = 25") == 0


def test_a_streak_broken_after_the_start_still_counts_the_new_run(client, conn):
    # The reference document's rule (streak now - streak at start) would say 5 - 3 = 2/5 here.
    for day in (0, 1, 2):
        checkin(client, 26, day)
    assert start(client, 26, "daily_checkin_5", day=2.1)["status"] == "applied"
    for day in (4, 5, 6, 7, 8):  # day 3 missed: the streak starts again at 1
        checkin(client, 26, day)
    assert partner_row(conn, 26).checkin_streak == 5

    result = claim(client, 26, "daily_checkin_5", day=8.1)
    assert result["status"] == "applied" and result["xp_granted"] == 250


def test_an_action_task_counts_only_the_run_ending_at_the_latest_checkin(client):
    start(client, 27, "daily_checkin_5")
    for day in (0, 1, 2, 3, 5):
        checkin(client, 27, day)
    result = claim(client, 27, "daily_checkin_5", day=5.1)
    assert (result["reason"], result["progress"]) == ("requirement_not_met", "1/5")


def test_an_expired_attempt_can_be_started_again_and_is_paid_once(client, conn):
    start(client, 28, "invite_1_friend")
    conn.execute(text("UPDATE partner_task SET status = 'EXPIRED' WHERE partner_id = 28"))
    refer(client, 28, 2801)

    expired_claim = claim(client, 28, "invite_1_friend", day=1)
    assert (expired_claim["reason"], expired_claim["attempt"]) == ("not_started", 1)
    restarted = start(client, 28, "invite_1_friend", day=8)
    assert restarted["status"] == "applied" and restarted["attempt"] == 2
    refer(client, 28, 2802, day=8)
    results = [claim(client, 28, "invite_1_friend", day=9) for _ in range(3)]

    assert [r["status"] for r in results] == ["applied", "duplicate", "duplicate"]
    assert results[0]["key"] == "task:28:invite_1_friend:2"
    assert partner_row(conn, 28).xp == 250


def test_a_social_task_pays_on_claim_with_no_requirement(client, conn):
    start(client, 29, "community_chat")
    result = claim(client, 29, "community_chat")
    assert result["status"] == "applied" and result["xp_granted"] == 100
    ledger = conn.execute(text("SELECT entry_type, rule_version, description FROM xp_ledger "
                               "WHERE partner_id = 29")).one()
    assert ledger.entry_type == "task_reward" and ledger.rule_version.startswith("catalog-")
    assert "Join the community chat" in ledger.description
