"""Reordered jobs through real worker processes converge to in-order processing (DESIGN.md 6a).

For a few seeds, each of many partners gets a random job set (check-ins
with gaps, PRO spans, duplicates). The jobs are shuffled across partners and
queues and consumed by two worker processes at once, on a Redis database
no other worker uses. A mirror partner per partner gets the same jobs
applied in `occurred_at` order directly; every pair must end identical.
"""

import random

import pytest
from celery.result import AsyncResult

from rewards import db
from rewards import settings as settings_module
from rewards.client import RewardsClient
from tests.support.convergence import apply, in_order, random_jobs, snapshot
from tests.support.processes import send_jobs, start_worker_process, wait_until

pytestmark = pytest.mark.system

PARTNERS = 40
MIRROR_OFFSET = 1_000


@pytest.mark.parametrize("seed", [11, 23, 47])
def test_two_workers_applying_shuffled_jobs_leave_every_partner_as_in_order_processing_would(
        clean_state, system_broker_url, tmp_path, seed):
    rng = random.Random(seed)
    job_sets = {partner_id: random_jobs(rng, span_days=10) for partner_id in range(1, PARTNERS + 1)}
    shuffled = [(job.task_name, job.kwargs(partner_id)) for partner_id, jobs in job_sets.items() for job in jobs]
    rng.shuffle(shuffled)
    env = {"CELERY_BROKER_URL": system_broker_url}
    job_ids = send_jobs(shuffled, env)
    workers = [start_worker_process(f"convergence{n}-{seed}", "checkins,claims", env, tmp_path) for n in (1, 2)]
    client = RewardsClient()
    try:
        wait_until(lambda: all(AsyncResult(job_id, app=client.app).ready() for job_id in job_ids), 180,
                   f"all {len(job_ids)} jobs to finish (seed {seed})", tuple(workers))
        metas = [client.app.backend.get_task_meta(job_id) for job_id in job_ids]
    finally:
        for worker in workers:
            worker.kill()
        client.close()
    assert {meta["status"] for meta in metas} == {"SUCCESS"}
    assert {meta["result"]["status"] for meta in metas} <= {"applied", "duplicate"}
    worked = {meta["worker"].split("@")[0] for meta in metas}
    assert worked == {worker.name for worker in workers}, f"only {worked} applied jobs"

    policy = settings_module.get().policy
    assert policy.late_window_days >= 10, "the job sets span 10 days: every job must be inside the window"
    for partner_id, jobs in job_sets.items():
        for job in in_order(jobs):
            apply(partner_id + MIRROR_OFFSET, job, policy)
    with db.get_engine().connect() as conn:
        for partner_id in job_sets:
            assert snapshot(conn, partner_id) == snapshot(conn, partner_id + MIRROR_OFFSET), (
                f"seed {seed}, partner {partner_id}: {job_sets[partner_id]}")
