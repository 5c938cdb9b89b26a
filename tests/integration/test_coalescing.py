"""A coalescing RewardsClient through the real broker and worker: jobs sent one per call from many threads
travel as batch messages, and each call's handle answers that job's own result."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from rewards.client import RewardsClient
from tests.support.database import count, partner_row
from tests.support.jobs import RESULT_TIMEOUT_S, at
from tests.support.processes import wait_until

# Long enough that threads started together always gather: the test is about what gathering does.
LINGER_MS = 100


@pytest.fixture
def coalescing(client) -> Iterator[RewardsClient]:
    coalescing_client = RewardsClient(linger_ms=LINGER_MS)
    yield coalescing_client
    coalescing_client.close()


def in_threads(count_: int, action: Callable[[int], object]) -> list:
    """Run `action(n)` for n in range(count_), each in a thread of its own, started together."""
    outcomes: list = [None] * count_
    barrier = threading.Barrier(count_)

    def run(number: int) -> None:
        barrier.wait()
        try:
            outcomes[number] = action(number)
        except BaseException as error:  # noqa: BLE001 - shown by the assertion below
            outcomes[number] = error
    threads = [threading.Thread(target=run, args=(number,)) for number in range(count_)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(RESULT_TIMEOUT_S)
    assert not [outcome for outcome in outcomes if isinstance(outcome, BaseException)], outcomes
    return outcomes


def test_check_ins_from_many_threads_travel_together_and_each_call_gets_its_own_result(coalescing, conn):
    handles = in_threads(12, lambda n: coalescing.checkin(100 + n, at(0)))
    results = in_threads(12, lambda n: handles[n].get(timeout=RESULT_TIMEOUT_S))

    assert len({handle.message_id for handle in handles}) < 12
    assert [(result["status"], result["partner_id"]) for result in results] == [
        ("applied", 100 + n) for n in range(12)]
    assert all(partner_row(conn, 100 + n).xp == 10 for n in range(12))


def test_starts_and_claims_from_many_threads_each_apply_once_with_their_own_results(coalescing, conn):
    def start_then_claim(n: int) -> tuple[dict, dict]:
        started = coalescing.start_task(200 + n, "telegram_bot", at(0)).get(timeout=RESULT_TIMEOUT_S)
        claimed = coalescing.claim_task(200 + n, "telegram_bot", at(0.1)).get(timeout=RESULT_TIMEOUT_S)
        return started, claimed
    outcomes = in_threads(8, start_then_claim)

    for n, (started, claimed) in enumerate(outcomes):
        assert (started["status"], started["partner_id"]) == ("applied", 200 + n)
        assert (claimed["status"], claimed["partner_id"], claimed["xp_granted"]) == ("applied", 200 + n, 100)
    assert count(conn, "partner_task") == 8 and sum(partner_row(conn, 200 + n).xp for n in range(8)) == 800


def test_a_check_in_and_a_referral_sent_together_travel_on_their_own_queues(coalescing, conn):
    def action(n: int):
        return coalescing.checkin(300, at(n)) if n < 3 else coalescing.record_referral(301, 310 + n, at(0))
    results = [handle.get(timeout=RESULT_TIMEOUT_S) for handle in in_threads(6, action)]

    assert [result["status"] for result in results] == ["applied"] * 6
    assert (partner_row(conn, 300).checkin_streak, partner_row(conn, 301).referral_count) == (3, 3)


def test_fire_and_forget_jobs_are_applied_and_their_handles_say_no_result_comes(coalescing, conn):
    handles = in_threads(6, lambda n: coalescing.checkin(400 + n, at(0), ignore_result=True))

    wait_until(lambda: count(conn, "checkin") == 6, RESULT_TIMEOUT_S, "the six check-ins to be applied")
    with pytest.raises(ValueError, match="ignore_result"):
        handles[0].get(timeout=1)
