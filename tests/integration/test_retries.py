"""Transient faults are retried with backoff, a bounded number of times, then recorded.

A test transaction holds the partner's row lock; the job's lock_timeout (500 ms
in the test settings) fires, which PostgreSQL reports as LockNotAvailable.
"""

import threading
import time

from sqlalchemy import text

from rewards import contract, db
from tests.support.jobs import RESULT_TIMEOUT_S, run

AT = "2026-07-01T10:00:00+00:00"


def hold_partner_lock(partner_id: int, hold_s: float) -> threading.Thread:
    locked = threading.Event()

    def hold():
        with db.transaction() as conn:
            conn.execute(text("SELECT id FROM partner WHERE id = :id FOR UPDATE"), {"id": partner_id})
            locked.set()
            time.sleep(hold_s)

    thread = threading.Thread(target=hold)
    thread.start()
    assert locked.wait(10)
    return thread


def test_a_job_blocked_by_a_lock_is_retried_and_applied_once_the_lock_is_gone(client, conn):
    run(client, contract.CHECKIN, partner_id=31, occurred_at=AT)
    holder = hold_partner_lock(31, hold_s=1.0)
    sent = client.checkin(31, occurred_at="2026-07-02T10:00:00+00:00")
    result = sent.get(timeout=RESULT_TIMEOUT_S)
    holder.join()

    assert result["status"] == "applied" and result["streak"] == 2
    assert sent.retries >= 1
    assert conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar() == 0


def test_a_job_still_blocked_after_its_retries_lands_in_job_failure(client, conn):
    run(client, contract.CHECKIN, partner_id=32, occurred_at=AT)
    holder = hold_partner_lock(32, hold_s=8.0)
    sent = client.checkin(32, occurred_at="2026-07-02T10:00:00+00:00")
    try:
        sent.get(timeout=RESULT_TIMEOUT_S, propagate=False)
    finally:
        holder.join()

    assert sent.state == "FAILURE"
    failure = conn.execute(text("SELECT task_name, reason, error FROM job_failure")).one()
    assert (failure.task_name, failure.reason) == (contract.CHECKIN, "retries_exhausted")
    assert "LockNotAvailable" in failure.error or "lock timeout" in failure.error
    assert conn.execute(text("SELECT xp FROM partner WHERE id = 32")).scalar() == 10
