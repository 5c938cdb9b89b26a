"""The batch's contract: its own status from its items', and the CLI's item syntax."""

import argparse
from datetime import date

import pytest

from rewards.cli.enqueue import checkin_batch_item
from rewards.contract.results import BatchResult, CheckinResult, Outcome

PAID = CheckinResult(partner_id=1, day=date(2026, 3, 2), streak=1, frozen_days=0, base_xp=10, bonus_xp=0,
                     multiplier=1, xp_granted=10, xp_after=10)
APPLIED = Outcome.applied("checkin:1:2026-03-02", PAID)
DUPLICATE = Outcome.duplicate("checkin:1:2026-03-02", PAID)
REJECTED = Outcome.rejected("invalid_payload", "partner_id: must be an integer")


@pytest.mark.parametrize(("items", "status", "reason"), [
    ([APPLIED, DUPLICATE, REJECTED], "applied", None),
    ([DUPLICATE, REJECTED], "duplicate", "already_applied"),
    ([REJECTED, REJECTED], "rejected", "all_rejected"),
])
def test_a_batch_is_applied_if_any_check_in_was_duplicate_if_none_was_new(items, status, reason):
    result = BatchResult.of(items).outcome().as_result()
    assert (result["status"], result["reason"]) == (status, reason)
    assert [item["status"] for item in result["items"]] == [item.status for item in items]


def test_only_applied_check_ins_count_towards_the_batchs_xp():
    result = BatchResult.of([APPLIED, DUPLICATE, APPLIED]).outcome().as_result()
    assert (result["applied"], result["duplicate"], result["rejected"], result["xp_granted"]) == (2, 1, 0, 20)
    assert result["items"][1] == DUPLICATE.as_result()


def test_the_cli_takes_a_partner_with_or_without_an_instant():
    assert checkin_batch_item("42") == (42, None)
    assert checkin_batch_item("42@2026-11-24T09:30:00+01:00") == (42, "2026-11-24T09:30:00+01:00")
    with pytest.raises(argparse.ArgumentTypeError, match="PARTNER_ID@OCCURRED_AT"):
        checkin_batch_item("forty-two")
