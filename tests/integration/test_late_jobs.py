"""Late and reordered jobs pay exactly what in-order jobs pay (DESIGN.md section 6a).

Every job here goes through the real broker to the real worker, in the order
a reordering queue could deliver it; the invariants checker runs after each
test, so each correction row is also checked against the day it re-prices.
"""

from sqlalchemy import text

from rewards import contract, settings
from tests.support.database import count, partner_row
from tests.support.jobs import at, checkin, claim, run, start


def pro_from(client, partner_id: int, day: float, until_day: float = 400) -> dict:
    return run(client, contract.PARTNER_UPDATE, partner_id=partner_id, pro_until=at(until_day),
               occurred_at=at(day))


def day_rows(conn, partner_id: int) -> list[tuple]:
    return conn.execute(text("SELECT day, streak, bonus_xp, multiplier, xp_granted FROM checkin "
                             "WHERE partner_id = :p ORDER BY day"), {"p": partner_id}).fetchall()


def test_day_two_processed_before_day_one_still_pays_twenty_xp_and_a_streak_of_two(client, conn):
    assert checkin(client, 401, 1)["streak"] == 1
    late = checkin(client, 401, 0)
    assert (late["status"], late["day"], late["streak"]) == ("applied", "2026-03-02", 1)
    assert "corrections" not in late                                # day 2 now has streak 2, still 10 XP
    state = partner_row(conn, 401)
    assert (state.xp, state.checkin_streak, state.longest_streak, state.total_checkins) == (20, 2, 2, 2)


def test_a_pro_upgrade_processed_after_the_checkin_it_covers_reprices_it_to_fifty_xp(client, conn):
    assert checkin(client, 402, 0.01)["xp_granted"] == 10           # 09:14, before the upgrade arrives
    upgrade = pro_from(client, 402, 0)                              # 09:00 the same day
    assert upgrade["status"] == "applied"
    assert [(c["xp_was"], c["xp_granted"]) for c in upgrade["corrections"]] == [(10, 50)]
    assert partner_row(conn, 402).xp == 50
    assert count(conn, "xp_ledger WHERE partner_id = 402 AND entry_type = 'correction'") == 1


def test_fourteen_days_delivered_in_reverse_pay_440_xp_with_both_bonuses_in_place(client, conn):
    for day in reversed(range(14)):
        assert checkin(client, 403, day)["status"] == "applied"
    assert partner_row(conn, 403).xp == 440
    rows = day_rows(conn, 403)
    assert [row.streak for row in rows] == list(range(1, 15))
    assert [str(row.day) for row in rows if row.bonus_xp] == ["2026-03-08", "2026-03-15"]
    assert conn.execute(text("SELECT badge FROM partner_badge WHERE partner_id = 403")).scalars().all() == [
        "consistency_champion"]


def test_a_late_day_that_joins_two_streaks_moves_the_bonus_and_nets_out_to_the_in_order_total(client, conn):
    for day in [0, 1, 2] + list(range(4, 11)):                      # days 1-3 and 5-11 paid
        checkin(client, 404, day)
    assert partner_row(conn, 404).xp == 10 * 10 + 150               # day 11 is day 7 of the second run
    late = checkin(client, 404, 3)                                  # day 4 arrives
    moved = {c["day"]: (c["xp_was"], c["xp_granted"]) for c in late["corrections"]}
    assert moved == {"2026-03-08": (10, 160), "2026-03-12": (160, 10)}
    assert partner_row(conn, 404).xp == 11 * 10 + 150               # what in-order processing pays
    assert [row.streak for row in day_rows(conn, 404)] == list(range(1, 12))


def test_a_duplicate_of_a_repriced_day_answers_with_its_current_price(client):
    for day in (0, 1, 2, 4, 5, 6, 7, 8, 9, 10):
        checkin(client, 405, day)
    checkin(client, 405, 3)
    replay = checkin(client, 405, 6)
    assert (replay["status"], replay["streak"], replay["xp_granted"]) == ("duplicate", 7, 160)


def test_a_checkin_twenty_days_before_the_latest_is_too_late_and_writes_nothing_but_the_record(client, conn):
    assert settings.get().policy.late_window_days < 20
    checkin(client, 406, 20)
    late = checkin(client, 406, 0)
    assert (late["status"], late["reason"]) == ("rejected", "too_late")
    assert "2026-03-02" in late["message"]
    assert count(conn, "checkin WHERE partner_id = 406") == 1
    assert partner_row(conn, 406).xp == 10
    assert count(conn, "audit_event WHERE partner_id = 406 AND event_type = 'job.rejected'") == 1


def test_a_checkin_exactly_at_the_window_edge_is_applied_and_one_day_more_is_too_late(client, conn):
    window_days = settings.get().policy.late_window_days
    checkin(client, 407, window_days + 1)
    assert checkin(client, 407, 1)["status"] == "applied"
    assert checkin(client, 407, 0)["reason"] == "too_late"
    assert partner_row(conn, 407).xp == 20


def test_a_late_pro_upgrade_reprices_a_task_claim_it_covers(client, conn):
    start(client, 408, "telegram_bot", 0.1)
    assert claim(client, 408, "telegram_bot", 0.2)["xp_granted"] == 100
    upgrade = pro_from(client, 408, 0)
    assert [(c["task_id"], c["xp_was"], c["xp_granted"]) for c in upgrade["corrections"]] == [
        ("telegram_bot", 100, 500)]
    assert partner_row(conn, 408).xp == 500
    again = claim(client, 408, "telegram_bot", 0.3)
    assert (again["status"], again["multiplier"], again["xp_granted"]) == ("duplicate", 5, 500)


def test_a_late_pro_cancellation_takes_back_the_multiplier_with_a_negative_correction(client, conn):
    pro_from(client, 409, 0)
    for day in range(3):
        checkin(client, 409, day + 0.1)
    assert partner_row(conn, 409).xp == 150
    cancelled = run(client, contract.PARTNER_UPDATE, partner_id=409, pro_until=None, occurred_at=at(1))
    assert cancelled["status"] == "applied"
    assert sorted(c["xp_posted"] for c in cancelled["corrections"]) == [-40, -40]
    assert partner_row(conn, 409).xp == 70


def test_an_older_pro_change_still_reprices_what_it_covers_though_a_newer_one_set_the_plan(client, conn):
    checkin(client, 410, 1.1)
    run(client, contract.PARTNER_UPDATE, partner_id=410, pro_until=None, occurred_at=at(2))
    older = pro_from(client, 410, 1)                 # PRO from day 1 until the day-2 cancellation
    assert (older["status"], older["superseded"]) == ("applied", ["pro_until"])
    assert partner_row(conn, 410).xp == 50
    assert partner_row(conn, 410).pro_until is None
