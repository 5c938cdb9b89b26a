"""The stale-task sweep: STARTED attempts older than STALE_TASK_DAYS expire, once, and can start again."""

from datetime import timedelta

from sqlalchemy import text

from rewards import db
from schedules import sweep_stale_tasks
from schedules.runner import LOCK_HELD
from tests.support.jobs import START, claim, start
from tests.support.races import Background, advisory_lock_holders, holding, patient_engine, without_waiting

STALE_AFTER_DAYS = 7


def sweep(days_after_start: float, batch_size: int = 50):
    now = START + timedelta(days=days_after_start)
    return sweep_stale_tasks.run(db.get_engine(), now, batch_size, STALE_AFTER_DAYS)


def statuses(conn, partner_id: int) -> list[tuple]:
    return [tuple(row) for row in conn.execute(text(
        "SELECT task_id, attempt, status FROM partner_task WHERE partner_id = :p ORDER BY task_id, attempt"),
        {"p": partner_id})]


def test_an_attempt_started_more_than_seven_days_ago_expires_with_an_audit_row_and_an_event(client, conn):
    start(client, 301, "telegram_bot")
    start(client, 301, "banking_app", day=3)
    summary = sweep(days_after_start=8)
    assert (summary.examined, summary.changed) == (1, 1)
    assert statuses(conn, 301) == [("banking_app", 1, "STARTED"), ("telegram_bot", 1, "EXPIRED")]
    audit = conn.execute(text("SELECT payload FROM audit_event WHERE event_type = 'task.expired'")).scalar_one()
    assert (audit["task_id"], audit["attempt"]) == ("telegram_bot", 1)
    events = conn.execute(text("SELECT event_type, idempotency_key FROM outbox WHERE event_type = 'task.expired'"))
    assert [tuple(e) for e in events] == [("task.expired", "task_expired:301:telegram_bot:1")]


def test_a_completed_attempt_is_never_expired(client, conn):
    start(client, 302, "telegram_bot")
    assert claim(client, 302, "telegram_bot", day=1)["status"] == "applied"
    assert sweep(days_after_start=30).changed == 0
    assert statuses(conn, 302) == [("telegram_bot", 1, "COMPLETED")]


def test_an_expired_task_starts_again_as_a_new_attempt_and_pays_once(client, conn):
    start(client, 303, "community_chat")
    sweep(days_after_start=8)
    assert start(client, 303, "community_chat", day=9)["attempt"] == 2
    assert claim(client, 303, "community_chat", day=9)["xp_granted"] == 100
    assert statuses(conn, 303) == [("community_chat", 1, "EXPIRED"), ("community_chat", 2, "COMPLETED")]
    assert conn.execute(text("SELECT xp FROM partner WHERE id = 303")).scalar() == 100


def test_a_sweep_started_while_another_is_expiring_skips_and_the_first_expires_each_attempt_once(
        client, conn):
    partner_ids = list(range(310, 330))
    for partner_id in partner_ids:
        start(client, partner_id, "ambassador_hub")
    now = START + timedelta(days=8)
    # The test holds every attempt's row, so the first sweep stops at its first
    # expiry, inside its advisory lock, for as long as the test likes.
    every_attempt = "SELECT 1 FROM partner_task WHERE partner_id = ANY(:ids) FOR UPDATE"
    with holding(every_attempt, ids=partner_ids) as holder:
        first = Background("the first sweep", lambda: sweep_stale_tasks.run(patient_engine(), now, 5,
                                                                           STALE_AFTER_DAYS))
        holder.wait_for_waiters(1, "the first sweep to wait on its first expiry", first.failed)
        # The run holds its advisory lock on a session of its own, beside the batch's.
        [lock_holder] = advisory_lock_holders(sweep_stale_tasks.JOB)
        second = without_waiting("the second sweep", lambda: sweep(days_after_start=8))
        assert (second.skipped, second.examined, second.changed, second.batches) == (LOCK_HELD, 0, 0, 0)
        assert advisory_lock_holders(sweep_stale_tasks.JOB) == [lock_holder]
        assert expired_count(conn) == 0
    summary = first.result()
    assert (summary.skipped, summary.examined, summary.changed) == (None, 20, 20)
    assert expired_count(conn) == 20
    assert conn.execute(text("SELECT COUNT(*) FROM audit_event WHERE event_type = 'task.expired'")).scalar() == 20
    assert conn.execute(text("SELECT COUNT(*) FROM outbox WHERE event_type = 'task.expired'")).scalar() == 20


def expired_count(conn) -> int:
    return conn.execute(text("SELECT COUNT(*) FROM partner_task WHERE status = 'EXPIRED'")).scalar()


def test_a_completed_task_is_announced_once_even_when_claimed_twice(client, conn):
    start(client, 304, "banking_app")
    first, again = claim(client, 304, "banking_app", day=1), claim(client, 304, "banking_app", day=1)
    assert (first["status"], again["status"]) == ("applied", "duplicate")
    payloads = conn.execute(text("SELECT payload FROM outbox WHERE event_type = 'task.completed'")).scalars().all()
    assert [(p["task_id"], p["xp_granted"], p["xp_after"]) for p in payloads] == [("banking_app", 150, 150)]
