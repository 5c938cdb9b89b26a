"""Many deliveries at once: one claim pays, one referral counts, one adjustment applies."""

from rewards import contract
from tests.support.database import count, partner_row
from tests.support.jobs import at, refer_friends, run_all, start


def test_a_hundred_concurrent_claims_of_one_started_task_pay_once(client, conn):
    start(client, 300, "invite_3_friends")
    refer_friends(client, 300, range(3001, 3004))
    job = (contract.TASK_CLAIM, {"partner_id": 300, "task_id": "invite_3_friends", "occurred_at": at(1)})

    results = run_all(client, [job] * 100)

    statuses = [r["status"] for r in results]
    assert statuses.count("applied") == 1 and statuses.count("duplicate") == 99
    assert {(r["xp_granted"], r["xp_after"]) for r in results} == {(500, 500)}
    assert partner_row(conn, 300).xp == 500
    assert count(conn, "xp_ledger WHERE partner_id = 300") == 1
    assert count(conn, "audit_event WHERE event_type = 'task_completion'") == 1


def test_a_hundred_referrers_of_one_referee_at_once_count_once(client, conn):
    referee_id = 3150  # in the middle of the referrers' ids, so locks are taken in both orders
    jobs = [(contract.REFERRAL_RECORD, {"referrer_id": referrer_id, "referee_id": referee_id,
                                        "occurred_at": at()})
            for referrer_id in range(3101, 3201) if referrer_id != referee_id]
    jobs.append((contract.REFERRAL_RECORD, {"referrer_id": 3201, "referee_id": referee_id, "occurred_at": at()}))

    results = run_all(client, jobs)

    applied = [r for r in results if r["status"] == "applied"]
    assert len(applied) == 1 and len(results) == 100
    winner = applied[0]["referrer_id"]
    assert {r["referrer_id"] for r in results} == {winner}  # every duplicate names the first referrer
    assert partner_row(conn, winner).referral_count == 1
    assert count(conn, "partner WHERE referral_count > 0") == 1
    assert count(conn, "referral") == 1


def test_one_adjustment_sent_fifty_times_at_once_applies_once(client, conn):
    job = (contract.ADJUST, {"partner_id": 310, "amount": 700, "reason": "support ticket 77",
                             "request_id": "ticket-77"})
    results = run_all(client, [job] * 50)
    statuses = [r["status"] for r in results]
    assert statuses.count("applied") == 1 and statuses.count("duplicate") == 49
    assert {r["xp_after"] for r in results} == {700}
    assert partner_row(conn, 310).xp == 700
