"""The stale-task sweep: STARTED attempts older than STALE_TASK_DAYS expire, once, and can start again."""

import threading
from datetime import timedelta

from sqlalchemy import text

from rewards import db
from schedules import sweep_stale_tasks
from tests.support.jobs import START, claim, start

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


def test_two_sweeps_started_at_once_expire_each_stale_attempt_once(client, conn):
    for partner_id in range(310, 330):
        start(client, partner_id, "ambassador_hub")
    summaries = []
    barrier = threading.Barrier(2)

    def sweep_in_thread():
        barrier.wait()
        summaries.append(sweep(days_after_start=8, batch_size=5))

    threads = [threading.Thread(target=sweep_in_thread) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert sum(summary.changed for summary in summaries) == 20
    assert min(summary.changed for summary in summaries) == 0  # skipped on the lock, or found nothing left
    assert conn.execute(text("SELECT COUNT(*) FROM audit_event WHERE event_type = 'task.expired'")).scalar() == 20
    assert conn.execute(text("SELECT COUNT(*) FROM partner_task WHERE status = 'EXPIRED'")).scalar() == 20


def test_a_completed_task_is_announced_once_even_when_claimed_twice(client, conn):
    start(client, 304, "banking_app")
    first, again = claim(client, 304, "banking_app", day=1), claim(client, 304, "banking_app", day=1)
    assert (first["status"], again["status"]) == ("applied", "duplicate")
    payloads = conn.execute(text("SELECT payload FROM outbox WHERE event_type = 'task.completed'")).scalars().all()
    assert [(p["task_id"], p["xp_granted"], p["xp_after"]) for p in payloads] == [("banking_app", 150, 150)]
