"""rewards.checkin.batch through the real broker and worker: each check-in once, each with its result."""

from datetime import datetime, timedelta, timezone

from sqlalchemy import text

from rewards import contract
from rewards.cli.main import main
from tests.support.database import count, partner_row
from tests.support.jobs import RESULT_TIMEOUT_S, START, at, checkin


def send_batch(client, checkins: list) -> dict:
    [sent] = client.checkin_many(checkins)
    return sent.get(timeout=RESULT_TIMEOUT_S)


def deliver(client, job_id: str, checkins: list[dict]) -> dict:
    """One delivery of the message `job_id`, as the broker hands it to a worker."""
    client.app.AsyncResult(job_id).forget()
    sent = client.app.send_task(contract.CHECKIN_BATCH, kwargs={"checkins": checkins}, task_id=job_id,
                                queue=contract.QUEUE_CHECKINS)
    return sent.get(timeout=RESULT_TIMEOUT_S)


def test_a_batch_applies_every_check_in_once_and_reports_each_in_the_order_sent(client, conn):
    result = send_batch(client, [(3, at(0.5)), (1, at(0)), (2, at(0))])

    assert (result["status"], result["applied"], result["duplicate"], result["rejected"]) == ("applied", 3, 0, 0)
    assert [item["partner_id"] for item in result["items"]] == [3, 1, 2]
    assert [item["status"] for item in result["items"]] == ["applied"] * 3
    assert result["items"][1]["key"] == f"checkin:1:{START.date()}"
    assert result["xp_granted"] == 30
    assert [partner_row(conn, partner_id).xp for partner_id in (1, 2, 3)] == [10, 10, 10]


def test_a_batch_delivered_twice_pays_nothing_the_second_time(client, conn):
    items = [{"partner_id": 10, "occurred_at": at(day)} for day in range(3)]
    items.append({"partner_id": 11, "occurred_at": at(0)})

    first = deliver(client, "batch-delivered-twice", items)
    second = deliver(client, "batch-delivered-twice", items)

    assert first["status"] == "applied" and first["applied"] == 4
    assert second["status"] == "duplicate" and (second["applied"], second["duplicate"]) == (0, 4)
    assert [item["xp_after"] for item in second["items"]] == [item["xp_after"] for item in first["items"]]
    assert (partner_row(conn, 10).xp, partner_row(conn, 11).xp) == (30, 10)
    assert count(conn, "xp_ledger") == 4


def test_a_check_in_already_applied_alone_is_a_duplicate_inside_a_batch(client, conn):
    assert checkin(client, 20, 0)["status"] == "applied"
    result = send_batch(client, [(20, at(0)), (20, at(1)), (20, at(1))])

    assert [item["status"] for item in result["items"]] == ["duplicate", "applied", "duplicate"]
    assert partner_row(conn, 20).xp == 20 and partner_row(conn, 20).checkin_streak == 2


def test_a_weeks_days_in_any_order_inside_one_batch_pay_as_the_week_in_order(client, conn):
    shuffled_days = [6, 2, 0, 5, 1, 4, 3]
    result = send_batch(client, [(30, at(day)) for day in shuffled_days])

    assert result["applied"] == 7
    streak_by_day = {day: item["streak"] for day, item in zip(shuffled_days, result["items"])}
    assert streak_by_day == {day: day + 1 for day in range(7)}
    assert result["xp_granted"] == 6 * 10 + 160
    row = partner_row(conn, 30)
    assert (row.xp, row.checkin_streak, row.total_checkins) == (220, 7, 7)


def test_one_bad_check_in_is_rejected_alone_and_the_others_are_applied(client, conn):
    future = (datetime.now(timezone.utc) + timedelta(days=2)).isoformat()
    items = [
        {"partner_id": 40, "occurred_at": at(0)},
        {"partner_id": "41", "occurred_at": at(0)},
        {"partner_id": 42, "occurred_at": "2026-03-02T09:00:00"},
        {"partner_id": 43, "occurred_at": future},
        {"partner_id": 44, "occurred_at": at(0), "xp_granted": 1_000},
        "not a check-in",
        {"partner_id": 45, "occurred_at": at(0)},
    ]
    result = deliver(client, "batch-with-bad-items", items)

    statuses = [(item["status"], item.get("reason")) for item in result["items"]]
    assert statuses == [("applied", None), ("rejected", "invalid_payload"), ("rejected", "invalid_payload"),
                        ("rejected", "in_future"), ("rejected", "invalid_payload"),
                        ("rejected", "invalid_payload"), ("applied", None)]
    assert result["items"][1]["errors"][0]["field"] == "partner_id"
    assert result["items"][2]["errors"][0]["field"] == "occurred_at"
    assert result["items"][4]["errors"][0]["field"] == "xp_granted"
    assert (result["status"], result["applied"], result["rejected"]) == ("applied", 2, 5)
    assert conn.execute(text("SELECT id FROM partner ORDER BY id")).scalars().all() == [40, 45]
    assert count(conn, "checkin") == 2
    failures = conn.execute(text("SELECT task_name, reason FROM job_failure")).fetchall()
    assert sorted(tuple(row) for row in failures) == [(contract.CHECKIN_BATCH, "invalid_payload")] * 4


def test_a_batch_over_the_limit_or_without_check_ins_is_rejected_whole(client, conn):
    too_many = [{"partner_id": 50 + index, "occurred_at": at(0)} for index in range(client.batch_max + 1)]
    over = deliver(client, "batch-over-the-limit", too_many)
    empty = deliver(client, "batch-empty", [])

    assert (over["status"], over["reason"]) == ("rejected", "invalid_payload")
    assert "REWARDS_BATCH_MAX" in over["message"]
    assert (empty["status"], empty["reason"]) == ("rejected", "invalid_payload")
    assert empty["errors"][0]["field"] == "checkins"
    assert count(conn, "checkin") == 0 and count(conn, "job_failure") == 2


def test_a_batch_of_only_rejected_check_ins_is_rejected_naming_each(client, conn):
    result = send_batch(client, [{"partner_id": 60, "occurred_at": "yesterday"}])
    assert (result["status"], result["reason"], result["rejected"]) == ("rejected", "all_rejected", 1)
    assert result["items"][0]["reason"] == "invalid_payload"


def test_a_batch_of_check_ins_holding_unstorable_text_is_rejected_and_audited(client, conn):
    """A lone surrogate or NUL in an item is refused by the item's validation, and the
    batch's audit row stores it escaped instead of failing the job."""
    result = deliver(client, "batch-unstorable", [{"partner_id": 61, "occurred_at": "\ud800"},
                                                  {"partner_id": 62, "occurred_at": at(0), "note": "nul\x00"}])
    assert (result["status"], result["reason"], result["rejected"]) == ("rejected", "all_rejected", 2)
    audited = conn.execute(text(
        "SELECT payload FROM audit_event WHERE event_type = 'job.rejected' AND payload->>'task' = :task"),
        {"task": contract.CHECKIN_BATCH}).scalar_one()
    assert audited["payload"]["checkins"][0]["occurred_at"] == "\\ud800"
    assert count(conn, "checkin") == 0 and count(conn, "partner") == 0


def test_the_cli_sends_a_batch_and_prints_each_check_in(client, capsys):
    assert main(["enqueue", "checkin-batch", f"70@{at(0)}", f"71@{at(0)}", f"70@{at(0)}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "applied     2" in lines and "duplicate   1" in lines
    assert lines[-1].split()[:4] == ["2", "70", str(START.date()), "duplicate"]


REFUSE_PARTNER_999 = """
    CREATE FUNCTION refuse_partner_999() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.partner_id = 999 THEN RAISE EXCEPTION 'partner 999 is refused by a test trigger'; END IF;
        RETURN NEW;
    END $$;
    CREATE TRIGGER refuse_partner_999 BEFORE INSERT ON checkin
        FOR EACH ROW EXECUTE FUNCTION refuse_partner_999();
"""


def test_a_check_in_the_database_refuses_is_rolled_back_alone(client, conn, admin_conn):
    admin_conn.execute(text(REFUSE_PARTNER_999))  # DDL: the owner's, never a job's
    try:
        result = send_batch(client, [(998, at(0)), (999, at(0)), (1000, at(0))])
    finally:
        admin_conn.execute(text("DROP TRIGGER refuse_partner_999 ON checkin; DROP FUNCTION refuse_partner_999()"))

    assert [(item["status"], item.get("reason")) for item in result["items"]] == [
        ("applied", None), ("rejected", "apply_failed"), ("applied", None)]
    assert "refused by a test trigger" in result["items"][1]["message"]
    assert conn.execute(text("SELECT id FROM partner ORDER BY id")).scalars().all() == [998, 1000]
    failure = conn.execute(text("SELECT task_name, reason, payload FROM job_failure")).one()
    assert (failure.task_name, failure.reason, failure.payload["partner_id"]) == (
        contract.CHECKIN_BATCH, "apply_failed", 999)
