"""The one-statement check-in writes are the statement-per-write path, only faster.

On PostgreSQL an in-order check-in writes its key row, credit, ledger and
audit rows in one statement, and a batch writes each round of its partners'
next days in one statement. Both must leave exactly what the plain path
(`statement_per_write=True`, the path SQLite takes) leaves for the same jobs:
same partner, days, ledger, badges, freezes and audit payloads.
"""

import json
import random
from datetime import timedelta
from itertools import count

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text

from rewards import contract, db
from rewards.contract.payloads import CheckinJob, PartnerUpdateJob
from rewards.ledger.checkins import apply_checkin
from rewards.ledger.partners import apply_partner_update
from rewards.rules import Policy
from tests.support.convergence import Job, in_order, random_jobs, snapshot
from tests.support.database import count as count_rows
from tests.support.jobs import RESULT_TIMEOUT_S

POLICY = Policy(late_window_days=14)
partner_ids = count(700_001, 2)


def apply(partner_id: int, job: Job, *, statement_per_write: bool) -> dict:
    """One job in its own transaction, through the one-statement writes or the plain path."""
    now = job.occurred_at + timedelta(days=30)
    with db.transaction() as conn:
        conn.execution_options(statement_per_write=statement_per_write)
        if job.task_name == contract.CHECKIN:
            job_ = CheckinJob.model_validate(job.kwargs(partner_id))
            return apply_checkin(conn, job_, POLICY, now=now, future_tolerance=timedelta(0)).as_result()
        job_ = PartnerUpdateJob.model_validate(job.kwargs(partner_id))
        return apply_partner_update(conn, job_, POLICY, now=now, future_tolerance=timedelta(0)).as_result()


def written(conn, partner_id: int) -> dict:
    """The snapshot, plus every ledger row and audit payload as written (ids and clocks aside)."""
    ledger = conn.execute(text(
        "SELECT entry_type, base_amount, multiplier, amount, balance_after, split_part(idempotency_key, ':', 3),"
        " description FROM xp_ledger WHERE partner_id = :p ORDER BY id"), {"p": partner_id}).fetchall()
    audits = conn.execute(text("SELECT event_type, payload FROM audit_event WHERE partner_id = :p ORDER BY id"),
                          {"p": partner_id}).fetchall()
    return {**snapshot(conn, partner_id), "ledger": [tuple(row) for row in ledger],
            "audit": [tuple(row) for row in audits]}


def without_partner(found: object, partner_id: int) -> str:
    """`found` with the partner's id (in keys, in results) written as P, so two partners compare."""
    return json.dumps(found, default=str).replace(str(partner_id), "P")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), span_days=st.integers(min_value=1, max_value=15),
       shuffled=st.booleans())
def test_one_statement_check_ins_leave_what_the_statement_per_write_path_leaves(conn, seed, span_days, shuffled):
    rng = random.Random(seed)
    jobs = random_jobs(rng, span_days)
    order = rng.sample(jobs, len(jobs)) if shuffled else in_order(jobs)
    lean_id, plain_id = next(partner_ids), next(partner_ids)
    for job in order:
        lean = apply(lean_id, job, statement_per_write=False)
        plain = apply(plain_id, job, statement_per_write=True)
        assert without_partner(lean, lean_id) == without_partner(plain, plain_id), f"seed={seed}"
    assert without_partner(written(conn, lean_id), lean_id) == without_partner(written(conn, plain_id), plain_id), \
        f"seed={seed} span_days={span_days}"


def test_a_batch_of_late_and_duplicate_days_leaves_what_one_job_per_day_in_order_leaves(client, conn):
    rng = random.Random(12)
    batched_ids, expected_ids = [701, 702, 703], [801, 802, 803]
    checkins_by_partner = [[job for job in random_jobs(rng, 7) if job.task_name == contract.CHECKIN]
                           for _ in batched_ids]
    for partner_id, jobs in zip(batched_ids, checkins_by_partner):
        apply(partner_id, in_order(jobs)[-1], statement_per_write=False)  # the batch's days are late
    for partner_id, jobs in zip(expected_ids, checkins_by_partner):
        for job in in_order(jobs):
            apply(partner_id, job, statement_per_write=True)
    items = [(partner_id, job.occurred_at.isoformat())
             for partner_id, jobs in zip(batched_ids, checkins_by_partner) for job in jobs]

    [sent] = client.checkin_many(rng.sample(items, len(items)))
    result = sent.get(timeout=RESULT_TIMEOUT_S)

    assert result["rejected"] == 0 and result["duplicate"] >= 3
    assert result["applied"] + 3 == count_rows(conn, "checkin WHERE partner_id IN (701, 702, 703)")
    for batched_id, expected_id in zip(batched_ids, expected_ids):
        assert snapshot(conn, batched_id) == snapshot(conn, expected_id)


def test_a_redelivered_set_based_batch_pays_nothing_and_answers_each_item_as_before(client, conn):
    days = [0, 1, 2, 3, 4, 5, 6, 7]
    items = [{"partner_id": partner_id, "occurred_at": f"2026-03-{2 + day:02d}T09:00:00+00:00"}
             for day in days for partner_id in (711, 712, 713)]

    def deliver() -> dict:
        client.app.AsyncResult("set-based-redelivered").forget()
        sent = client.app.send_task(contract.CHECKIN_BATCH, kwargs={"checkins": items},
                                    task_id="set-based-redelivered", queue=contract.QUEUE_CHECKINS)
        return sent.get(timeout=RESULT_TIMEOUT_S)

    first = deliver()
    ledger_rows, events = count_rows(conn, "xp_ledger"), count_rows(conn, "outbox")
    second = deliver()

    assert first["applied"] == 24 and second["duplicate"] == 24
    assert [item["xp_after"] for item in second["items"]] == [item["xp_after"] for item in first["items"]]
    assert [item["streak"] for item in first["items"][-3:]] == [8, 8, 8]
    assert count_rows(conn, "xp_ledger") == ledger_rows
    assert count_rows(conn, "outbox") == events > 0  # the 7-day milestones, once
