"""rewards.claims.batch through the real broker and worker: task starts, claims, referrals and partner
updates many to a message, each applied once and answered as it would be alone."""

from sqlalchemy import text

from rewards import contract
from rewards.contract import keys
from tests.support.database import count, partner_row
from tests.support.jobs import RESULT_TIMEOUT_S, at, run

PRO_UNTIL = "2030-01-01T00:00:00+00:00"


def start(partner_id: int, task_id: str, day: float = 0) -> tuple[str, dict]:
    return contract.TASK_START, {"partner_id": partner_id, "task_id": task_id, "occurred_at": at(day)}


def claim(partner_id: int, task_id: str, day: float = 0.1) -> tuple[str, dict]:
    return contract.TASK_CLAIM, {"partner_id": partner_id, "task_id": task_id, "occurred_at": at(day)}


def refer(referrer_id: int, referee_id: int, day: float = 0) -> tuple[str, dict]:
    return contract.REFERRAL_RECORD, {"referrer_id": referrer_id, "referee_id": referee_id, "occurred_at": at(day)}


def make_pro(partner_id: int, day: float = -30) -> tuple[str, dict]:
    return contract.PARTNER_UPDATE, {"partner_id": partner_id, "pro_until": PRO_UNTIL, "occurred_at": at(day)}


def send_batch(client, jobs: list[tuple[str, dict]]) -> dict:
    [sent] = client.claims_many(jobs)
    return sent.get(timeout=RESULT_TIMEOUT_S)


def deliver(client, job_id: str, items: list) -> dict:
    """One delivery of the message `job_id`, as the broker hands it to a worker."""
    client.app.AsyncResult(job_id).forget()
    sent = client.app.send_task(contract.CLAIMS_BATCH, kwargs={"items": items}, task_id=job_id,
                                queue=contract.QUEUE_CLAIMS)
    return sent.get(timeout=RESULT_TIMEOUT_S)


def as_items(jobs: list[tuple[str, dict]]) -> list[dict]:
    return [{"job": name, "kwargs": kwargs} for name, kwargs in jobs]


def test_a_batch_applies_each_partners_jobs_in_the_order_sent_and_answers_each_alone(client, conn):
    jobs = [start(1, "telegram_bot"), make_pro(2), start(2, "banking_app"), claim(1, "telegram_bot"),
            refer(3, 4), claim(2, "banking_app")]
    result = send_batch(client, jobs)

    assert (result["status"], result["applied"], result["duplicate"], result["rejected"]) == ("applied", 6, 0, 0)
    assert [item["status"] for item in result["items"]] == ["applied"] * 6
    assert result["items"][3]["key"] == keys.task_key(1, "telegram_bot", 1)
    assert (result["items"][3]["xp_granted"], result["items"][5]["xp_granted"]) == (100, 150 * 5)
    assert result["items"][4]["referral_count"] == 1
    assert result["xp_granted"] == 100 + 750
    assert (partner_row(conn, 1).xp, partner_row(conn, 2).xp, partner_row(conn, 3).referral_count) == (100, 750, 1)


def test_the_same_jobs_alone_or_in_one_batch_leave_the_same_rows_and_results(client, conn):
    def jobs(base: int) -> list[tuple[str, dict]]:
        return [start(base, "invite_1_friend"), refer(base, base + 1), claim(base, "invite_1_friend"),
                make_pro(base + 2), start(base + 2, "community_chat"), claim(base + 2, "community_chat"),
                claim(base + 3, "telegram_bot")]  # never started: not_started

    alone = [run(client, name, **kwargs) for name, kwargs in jobs(10)]
    batched = send_batch(client, jobs(20))["items"]

    def comparable(result: dict, base: int) -> dict:
        """A result with its partner ids as the first set's; keys and messages name the partners."""
        return {name: value - base + 10 if name in ("partner_id", "referrer_id", "referee_id") else value
                for name, value in result.items() if name not in ("key", "message")}
    assert [comparable(item, 20) for item in batched] == [comparable(item, 10) for item in alone]
    rows = text("SELECT id - :base, xp, referral_count FROM partner WHERE id BETWEEN :base AND :base + 9 ORDER BY id")
    assert conn.execute(rows, {"base": 20}).all() == conn.execute(rows, {"base": 10}).all()


def test_a_batch_delivered_twice_pays_nothing_the_second_time(client, conn):
    items = as_items([start(30, "telegram_bot"), claim(30, "telegram_bot"), refer(31, 32)])

    first = deliver(client, "claims-delivered-twice", items)
    second = deliver(client, "claims-delivered-twice", items)

    assert first["status"] == "applied" and first["applied"] == 3
    # As each job sent again alone: the start finds its attempt completed, the claim and referral their keys.
    assert [(item["status"], item["reason"]) for item in second["items"]] == [
        ("rejected", "already_completed"), ("duplicate", "already_applied"), ("duplicate", "already_applied")]
    assert second["status"] == "duplicate"
    assert second["items"][1]["xp_after"] == first["items"][1]["xp_after"] == 100
    assert (partner_row(conn, 30).xp, partner_row(conn, 31).referral_count) == (100, 1)
    assert count(conn, "xp_ledger") == 1


def test_a_late_plan_change_inside_a_batch_reprices_the_claim_before_it(client, conn):
    result = send_batch(client, [start(40, "banking_app"), claim(40, "banking_app"), make_pro(40, day=-1)])

    update = result["items"][2]
    assert update["status"] == "applied"
    assert [correction["xp_granted"] for correction in update["corrections"]] == [150 * 5]
    assert partner_row(conn, 40).xp == 150 * 5


def test_bad_items_and_an_operators_job_are_rejected_alone_and_the_others_are_applied(client, conn):
    items = as_items([start(50, "telegram_bot")]) + [
        {"job": contract.ADJUST, "kwargs": {"partner_id": 50, "amount": 1_000_000, "reason": "x", "request_id": "r"}},
        {"job": contract.TASK_CLAIM, "kwargs": {"partner_id": "50", "task_id": "telegram_bot", "occurred_at": at()}},
        "not a job",
        {"job": contract.TASK_CLAIM, "kwargs": {"partner_id": 50, "task_id": "telegram_bot"}, "extra": 1},
    ] + as_items([claim(51, "telegram_bot"), claim(50, "telegram_bot")])
    result = deliver(client, "bad-items", items)

    statuses = [(item["status"], item.get("reason")) for item in result["items"]]
    assert statuses == [("applied", None), ("rejected", "invalid_payload"), ("rejected", "invalid_payload"),
                        ("rejected", "invalid_payload"), ("rejected", "invalid_payload"),
                        ("rejected", "not_started"), ("applied", None)]
    assert "cannot travel in rewards.claims.batch" in result["items"][1]["message"]
    assert result["items"][2]["errors"][0]["field"] == "partner_id"
    assert partner_row(conn, 50).xp == 100
    assert count(conn, "adjustment") == 0
    assert count(conn, "job_failure") == 4


def test_a_batch_over_the_limit_or_without_items_is_rejected_whole(client, conn):
    too_many = as_items([start(60 + index, "telegram_bot") for index in range(client.batch_max + 1)])
    over = deliver(client, "claims-over-the-limit", too_many)
    empty = deliver(client, "claims-empty", [])

    assert (over["status"], over["reason"]) == ("rejected", "invalid_payload")
    assert "REWARDS_BATCH_MAX" in over["message"]
    assert (empty["status"], empty["reason"]) == ("rejected", "invalid_payload")
    assert empty["errors"][0]["field"] == "items"
    assert count(conn, "partner_task") == 0 and count(conn, "job_failure") == 2
