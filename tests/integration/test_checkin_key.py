"""A check-in's key row decides, whatever the partner row said.

Jobs reach the check-in write holding the partner row lock, having seen
that the day is new; two deliveries of one check-in cannot both get there.
If they ever did (a bug in the lock, a partner state out of step with its
days), the (partner, day) key row still lets one of them pay: the second
insert meets the key and credits nothing. These tests take the place of
that second job, on both write paths, without the lock's help.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from sqlalchemy import text

from rewards import db, settings
from rewards.contract.payloads import CheckinJob
from rewards.ledger import balance, checkins

AT = datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc)
PARTNER_ID = 31


def write_as_a_job_that_saw_a_new_day(conn, state, *, one_statement: bool) -> int | None:
    """What an in-order check-in writes, priced from `state`: xp after, or None if the key was there."""
    policy = settings.get().policy
    job = CheckinJob(partner_id=PARTNER_ID, occurred_at=AT.isoformat())
    priced = checkins.price_next(conn, state, job, AT.date(), policy)
    if one_statement:
        credit = checkins.checkin_credit(state, job, priced, policy)
        return balance.credit_checkins(conn, [credit], rule_version=policy.version, now=AT).get(
            (PARTNER_ID, AT.date()))
    return checkins._write_next(conn, state, job, priced, policy, AT)


@pytest.mark.parametrize("one_statement", [True, False], ids=["one statement", "statement per write"])
def test_a_second_write_of_a_day_that_passed_the_partner_check_credits_nothing(conn, one_statement):
    with db.transaction() as first:
        state_seen_by_both = balance.lock_partner(first, PARTNER_ID, AT)
        assert write_as_a_job_that_saw_a_new_day(first, state_seen_by_both, one_statement=one_statement) == 10

    with db.transaction() as second:
        balance.lock_partner(second, PARTNER_ID, AT)
        again = write_as_a_job_that_saw_a_new_day(second, state_seen_by_both, one_statement=one_statement)

    assert again is None
    assert conn.execute(text("SELECT xp FROM partner WHERE id = :id"), {"id": PARTNER_ID}).scalar_one() == 10
    assert conn.execute(text("SELECT COUNT(*) FROM xp_ledger")).scalar_one() == 1
    assert conn.execute(text("SELECT COUNT(*) FROM audit_event WHERE event_type = 'checkin'")).scalar_one() == 1
