"""Referrals count once per referee; an operator's adjustment applies once per request_id."""

from sqlalchemy import text

from tests.support.database import count, partner_row
from tests.support.jobs import adjust, refer


def test_a_referral_creates_both_partners_and_counts_for_the_referrer(client, conn):
    result = refer(client, 40, 41)
    assert result["status"] == "applied" and result["referral_count"] == 1
    assert partner_row(conn, 40).referral_count == 1
    assert partner_row(conn, 41).referral_count == 0


def test_the_first_referrer_wins_and_a_later_one_is_a_duplicate_naming_the_first(client, conn):
    refer(client, 42, 44)
    later = refer(client, 43, 44, day=1)
    assert (later["status"], later["reason"], later["referrer_id"]) == ("duplicate", "already_referred", 42)
    assert partner_row(conn, 43).referral_count == 0


def test_a_referral_redelivered_is_a_duplicate_of_itself(client, conn):
    first = refer(client, 45, 46)
    again = refer(client, 45, 46)
    assert (again["status"], again["reason"]) == ("duplicate", "already_applied")
    assert again["occurred_at"] == first["occurred_at"]
    assert partner_row(conn, 45).referral_count == 1


def test_a_partner_cannot_refer_themselves(client, conn):
    result = refer(client, 47, 47)
    assert (result["status"], result["reason"]) == ("rejected", "self_referral")
    assert count(conn, "partner WHERE id = 47") == 0 and count(conn, "referral") == 0


def test_an_adjustment_replayed_with_the_same_request_id_applies_once(client, conn):
    first = adjust(client, 50, 300, "req-50")
    again = adjust(client, 50, 300, "req-50")
    assert first["status"] == "applied" and again["status"] == "duplicate"
    assert again["xp_after"] == first["xp_after"] == 300
    row = conn.execute(text("SELECT entry_type, base_amount, multiplier, amount, description, rule_version "
                            "FROM xp_ledger WHERE partner_id = 50")).one()
    assert tuple(row)[:4] == ("adjustment", 300, 1, 300)
    assert "goodwill credit" in row.description and row.rule_version == "operator"


def test_the_same_request_id_with_another_amount_is_refused_as_a_conflict(client, conn):
    adjust(client, 51, 300, "req-51")
    conflict = adjust(client, 51, 301, "req-51")
    other_partner = adjust(client, 52, 300, "req-51")
    assert (conflict["status"], conflict["reason"]) == ("rejected", "idempotency_conflict")
    assert other_partner["reason"] == "idempotency_conflict"
    assert partner_row(conn, 51).xp == 300 and count(conn, "partner WHERE id = 52") == 0


def test_a_deduction_below_zero_is_refused_and_stays_refused(client, conn):
    adjust(client, 53, 100, "grant-53")
    refused = adjust(client, 53, -150, "deduct-53")
    assert (refused["status"], refused["reason"], refused["xp"]) == ("rejected", "insufficient_xp", 100)
    adjust(client, 53, 100, "grant-53b")
    replayed = adjust(client, 53, -150, "deduct-53")  # the first outcome of a request_id is final
    assert replayed["reason"] == "insufficient_xp"
    assert partner_row(conn, 53).xp == 200


def test_a_deduction_within_the_balance_is_applied(client, conn):
    adjust(client, 54, 100, "grant-54")
    result = adjust(client, 54, -100, "deduct-54", reason="reversed duplicate grant")
    assert result["status"] == "applied" and (result["xp_granted"], result["xp_after"]) == (-100, 0)
    assert partner_row(conn, 54).xp == 0
