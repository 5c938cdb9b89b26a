"""The final state is a function of the set of jobs, not of the order they ran in (DESIGN.md 6a).

Hypothesis draws a partner's jobs (check-ins with gaps, PRO spans starting and
ending, duplicates) and an order; the jobs are applied to one partner in
`occurred_at` order and to another in the drawn order, each job in its own
transaction on the real PostgreSQL, exactly as a worker applies it. Both
partners must end identical: balance, streak state, every day's streak and
price, the ledger's sum per day, badges and freezes. The same property
through real worker processes consuming concurrently is in
tests/system/test_convergence_workers.py.
"""

import random
from itertools import count

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rewards.rules import Policy
from tests.support.convergence import apply, in_order, random_jobs, snapshot

# The job sets span up to 15 days: every job is inside a 14-day window.
POLICY = Policy(late_window_days=14)
partner_ids = count(900_001, 2)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(min_value=0, max_value=2**32 - 1), span_days=st.integers(min_value=1, max_value=15))
@example(seed=117700773, span_days=1)  # two different PRO changes stamped the same instant
def test_any_order_of_the_same_jobs_ends_in_the_same_state_as_in_order_processing(conn, seed, span_days):
    rng = random.Random(seed)
    jobs = random_jobs(rng, span_days)
    shuffled = list(jobs)
    rng.shuffle(shuffled)
    expected_id, shuffled_id = next(partner_ids), next(partner_ids)
    for job in in_order(jobs):
        apply(expected_id, job, POLICY)
    for job in shuffled:
        apply(shuffled_id, job, POLICY)
    assert snapshot(conn, shuffled_id) == snapshot(conn, expected_id), f"seed={seed} span_days={span_days}"
