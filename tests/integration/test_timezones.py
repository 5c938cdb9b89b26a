"""Days are calendar days in the partner's IANA time zone, DST included."""

from rewards import contract
from tests.support.database import partner_row
from tests.support.jobs import run


def set_zone(client, partner_id: int, zone: str, at: str = "2026-01-01T00:00:00+00:00") -> None:
    assert run(client, contract.PARTNER_UPDATE, partner_id=partner_id, timezone=zone,
               occurred_at=at)["status"] == "applied"


def checkin(client, partner_id: int, at: str) -> dict:
    return run(client, contract.CHECKIN, partner_id=partner_id, occurred_at=at)


def test_half_past_eleven_utc_is_already_the_next_day_in_tokyo(client):
    set_zone(client, 10, "Asia/Tokyo")
    assert checkin(client, 10, "2026-03-01T23:30:00+00:00")["day"] == "2026-03-02"
    # 14:00 UTC on 2 March is 23:00 in Tokyo: the same local day, so a duplicate.
    assert checkin(client, 10, "2026-03-02T14:00:00+00:00")["status"] == "duplicate"


def test_the_spring_forward_day_in_new_york_counts_once(client, conn):
    set_zone(client, 11, "America/New_York")
    before = checkin(client, 11, "2026-03-07T17:00:00+00:00")
    early = checkin(client, 11, "2026-03-08T05:30:00+00:00")   # 00:30 EST on 8 March
    late = checkin(client, 11, "2026-03-09T03:30:00+00:00")    # 23:30 EDT on 8 March
    after = checkin(client, 11, "2026-03-09T16:00:00+00:00")
    assert [before["day"], early["day"], after["day"]] == ["2026-03-07", "2026-03-08", "2026-03-09"]
    assert late["status"] == "duplicate" and late["day"] == "2026-03-08"
    assert after["streak"] == 3 and partner_row(conn, 11).total_checkins == 3


def test_the_fall_back_day_in_new_york_counts_once(client, conn):
    set_zone(client, 12, "America/New_York")
    early = checkin(client, 12, "2026-11-01T04:30:00+00:00")   # 00:30 EDT on 1 November
    late = checkin(client, 12, "2026-11-02T04:30:00+00:00")    # 23:30 EST on 1 November
    next_day = checkin(client, 12, "2026-11-02T06:00:00+00:00")  # 01:00 EST on 2 November
    assert early["day"] == late["day"] == "2026-11-01" and late["status"] == "duplicate"
    assert next_day["day"] == "2026-11-02" and next_day["streak"] == 2
    assert partner_row(conn, 12).xp == 20


def test_changing_time_zone_never_pays_one_instant_twice(client, conn):
    instant = "2026-04-01T23:30:00+00:00"   # 1 April in UTC, 2 April in Tokyo
    first = checkin(client, 13, instant)
    set_zone(client, 13, "Asia/Tokyo", at="2026-04-01T23:40:00+00:00")
    replay = checkin(client, 13, instant)
    assert first["status"] == "applied" and first["day"] == "2026-04-01"
    assert replay["status"] == "duplicate" and replay["key"] == first["key"]
    assert partner_row(conn, 13).xp == 10


def test_moving_west_after_checking_in_does_not_pay_the_same_local_day_again(client, conn):
    set_zone(client, 14, "Asia/Tokyo")
    first = checkin(client, 14, "2026-05-01T22:00:00+00:00")   # 07:00 on 2 May in Tokyo
    set_zone(client, 14, "America/Los_Angeles", at="2026-05-01T23:00:00+00:00")
    later = checkin(client, 14, "2026-05-02T01:00:00+00:00")   # 18:00 on 1 May in Los Angeles
    assert first["day"] == "2026-05-02"
    assert later["status"] == "duplicate" and later["reason"] == "already_checked_in"
    assert partner_row(conn, 14).xp == 10
