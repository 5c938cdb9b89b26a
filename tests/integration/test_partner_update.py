"""Partner updates: last write by occurred_at wins, field by field."""

import pytest

from rewards import contract
from tests.support.database import partner_row
from tests.support.jobs import run

T1, T2, T3 = "2026-08-01T10:00:00+00:00", "2026-08-02T10:00:00+00:00", "2026-08-03T10:00:00+00:00"


def update(client, **kwargs) -> dict:
    return run(client, contract.PARTNER_UPDATE, partner_id=41, **kwargs)


def test_a_partner_is_created_on_its_first_job_as_regular_in_utc(client, conn):
    run(client, contract.CHECKIN, partner_id=40, occurred_at=T1)
    row = partner_row(conn, 40)
    assert (row.timezone, row.pro_until, row.xp) == ("UTC", None, 10)


def test_an_older_update_arriving_late_changes_nothing(client, conn):
    assert update(client, timezone="Asia/Tokyo", occurred_at=T2)["status"] == "applied"
    late = update(client, timezone="Europe/Berlin", occurred_at=T1)
    assert (late["status"], late["reason"]) == ("rejected", "superseded")
    assert partner_row(conn, 41).timezone == "Asia/Tokyo"


def test_fields_are_decided_one_by_one(client, conn):
    update(client, timezone="Asia/Tokyo", occurred_at=T2)
    mixed = update(client, timezone="Europe/Berlin", pro_until="2027-01-01T00:00:00+00:00", occurred_at=T1)
    assert mixed["status"] == "applied" and mixed["superseded"] == ["timezone"]
    row = partner_row(conn, 41)
    assert row.timezone == "Asia/Tokyo" and row.pro_until.year == 2027


def test_the_same_update_replayed_is_a_duplicate(client):
    first = update(client, pro_until="2027-01-01T00:00:00+00:00", occurred_at=T1)
    again = update(client, pro_until="2027-01-01T00:00:00+00:00", occurred_at=T1)
    assert (first["status"], again["status"]) == ("applied", "duplicate")


def test_pro_ends_with_a_null_pro_until(client, conn):
    update(client, pro_until="2027-01-01T00:00:00+00:00", occurred_at=T1)
    assert update(client, pro_until=None, occurred_at=T3)["status"] == "applied"
    assert partner_row(conn, 41).pro_until is None


@pytest.mark.parametrize("arrival", ["ending first", "granting first"])
def test_two_pro_changes_stamped_the_same_instant_settle_the_same_in_either_order(client, conn, arrival):
    """The later PRO end holds, whichever arrives first, and the check-in it covers is priced PRO."""
    changes = [dict(pro_until=None), dict(pro_until="2026-08-03T00:00:00+00:00")]
    if arrival == "granting first":
        changes.reverse()
    run(client, contract.CHECKIN, partner_id=41, occurred_at=T2)
    first, second = (update(client, occurred_at=T1, **change) for change in changes)
    assert first["status"] == "applied"
    # A later grant replaces an ending at that instant; an ending after a grant loses to it.
    assert second["status"] == ("applied" if arrival == "ending first" else "rejected")
    row = partner_row(conn, 41)
    assert (row.pro_until.isoformat(), row.xp) == ("2026-08-03T00:00:00+00:00", 50)
