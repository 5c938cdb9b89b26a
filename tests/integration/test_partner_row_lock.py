"""One partner's distinct jobs running at the same time take turns on the partner's row.

Every job locks its partner's row for its whole transaction (DESIGN.md 6), so
streak state, balance and the ledger chain move together. A test of that
lock needs jobs of one partner that really overlap, which jobs queued one
after another rarely do; so here the race is forced:

- two `celery -A workers worker` processes (prefork ×2 each, prefetching one
  message per pool process) consume a broker database of their own, so four
  jobs can run at once, each in a process of its own;
- the test holds the partner's row (`SELECT … FOR UPDATE`, as the owner)
  while it sends the jobs, waits until PostgreSQL shows all four pool
  processes' sessions queued behind it, and only then commits: four jobs
  that each read the partner before any of them wrote contend at once.

Without the lock each of those four would price its work from the same
stale row; the assertions below (prices per day, streaks, the ledger chain,
refusals that depend on the balance) then fail, every time.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis
from sqlalchemy import text

from rewards import contract
from tests.support.database import count, partner_row
from tests.support.jobs import START, adjust, at, make_pro, refer, run
from tests.support.processes import WorkerProcess, send_jobs, start_worker_process, wait_until
from tests.support.races import PATIENT_WAIT_MS, blocked_by, holding_partners
from workers import app

# Two workers × two pool processes: the jobs that can run at the same time.
SLOTS = 4
STARTUP_AND_QUEUE_WAIT_S = 60.0
RESULTS_WAIT_S = 60.0


@dataclass
class LockWorkers:
    env: dict[str, str]
    processes: tuple[WorkerProcess, ...]

    def problem(self) -> str | None:
        """Why waiting on these workers is pointless: one of them exited (with its log)."""
        for worker in self.processes:
            if not worker.alive():
                return f"worker {worker.name} exited with {worker.process.returncode}:\n{worker.log_tail()}"
        return None

    def logs(self) -> str:
        return "\n".join(f"--- {worker.name}:\n{worker.log_tail()}" for worker in self.processes)

    def send(self, jobs: list[tuple[str, dict[str, Any]]]) -> list[str]:
        return send_jobs(jobs, self.env)

    def finished_early(self, job_ids: list[str]) -> str | None:
        """A job that ended while the test held its partner's row never waited for the row."""
        done = [app.AsyncResult(job_id) for job_id in job_ids]
        early = [result.result for result in done if result.ready()]
        return f"{len(early)} jobs finished without waiting for the partner's row: {early}" if early else None

    def results(self, job_ids: list[str]) -> list[dict[str, Any] | str]:
        """Each job's JSON result, in sending order; a job that raised appears as `failed: <error>`."""
        pending = [app.AsyncResult(job_id) for job_id in job_ids]
        wait_until(lambda: all(result.ready() for result in pending), RESULTS_WAIT_S,
                   "the raced jobs' results", workers=self.processes)
        return [result.result if result.successful() else f"failed: {result.result!r}" for result in pending]


@pytest.fixture(scope="module")
def lock_workers(tmp_path_factory) -> Iterator[LockWorkers]:
    url = os.environ.get("REWARDS_SYSTEM_BROKER_URL", "redis://127.0.0.1:6379/12")
    redis.Redis.from_url(url).flushdb()
    env = {
        "CELERY_BROKER_URL": url,
        # Jobs wait on the test's lock rather than time out and retry, which
        # would let them re-read the partner after the test let go.
        "REWARDS_LOCK_TIMEOUT_MS": str(PATIENT_WAIT_MS),
        "REWARDS_STATEMENT_TIMEOUT_MS": str(PATIENT_WAIT_MS),
    }
    log_dir = tmp_path_factory.mktemp("lock-workers")
    # One message per pool process: a worker reserving more would leave the
    # other with nothing, and fewer jobs than SLOTS running at once.
    processes = tuple(start_worker_process(f"lock-{n}", "checkins,claims,operator", env, log_dir,
                                           options=("--prefetch-multiplier=1",)) for n in (1, 2))
    try:
        yield LockWorkers(env, processes)
    finally:
        for worker in processes:
            worker.kill()
        redis.Redis.from_url(url).flushdb()


def hold_and_release(lock_workers: LockWorkers, partner_id: int, *batches: list) -> list[dict | str]:
    """Send each batch while the test holds the partner's row; let go once its jobs all wait on it.

    A batch is sent only once every job sent before it is queued on the row.
    The first job queued is certain to have the row first when the test lets
    go: it alone waits on the test's transaction, which changed nothing, while
    the rest queue behind it. Later ones may overtake each other (each commit
    leaves a new version of the row to queue on), so only the first job's
    place is relied on. Returns every job's result, in sending order.
    """
    job_ids: list[str] = []
    waiting: list[int] = []
    with holding_partners(partner_id) as holder:
        for batch in batches:
            ahead = set(waiting)
            job_ids += lock_workers.send(batch)
            queued = min(len(job_ids), SLOTS)
            waiting = holder.wait_for_waiters(
                queued, f"{queued} jobs of partner {partner_id} to queue on its row",
                lambda: lock_workers.problem() or lock_workers.finished_early(job_ids),
                timeout_s=STARTUP_AND_QUEUE_WAIT_S)
            for pid in set(waiting) - ahead:
                assert not ahead or ahead & set(blocked_by(pid)), \
                    f"session {pid} is not queued behind the jobs sent before it ({sorted(ahead)})"
    return lock_workers.results(job_ids)


def statuses(results: list[dict | str]) -> list[str]:
    return [result["status"] if isinstance(result, dict) else result for result in results]


def checkin_job(partner_id: int, day: int, hour: int = 9) -> tuple[str, dict]:
    occurred_at = (START + timedelta(days=day, hours=hour - START.hour)).isoformat()
    return contract.CHECKIN, {"partner_id": partner_id, "occurred_at": occurred_at}


def claim_job(partner_id: int, task_id: str, day: int) -> tuple[str, dict]:
    return contract.TASK_CLAIM, {"partner_id": partner_id, "task_id": task_id, "occurred_at": at(day + 0.5)}


def day_prices(streaks: range, multiplier: int) -> list[tuple]:
    """(streak, base, bonus, multiplier, xp granted) per day, as DESIGN.md 4 states them:
    10 XP a day, 150 more every 7th consecutive day, all of it times 5 for PRO."""
    return [(streak, 10, 150 if streak % 7 == 0 else 0, multiplier,
             (10 + (150 if streak % 7 == 0 else 0)) * multiplier) for streak in streaks]


def checkin_rows(conn, partner_id: int) -> list[tuple]:
    return [tuple(row) for row in conn.execute(text(
        "SELECT streak, base_xp, bonus_xp, multiplier, xp_granted FROM checkin "
        "WHERE partner_id = :p ORDER BY day"),
        {"p": partner_id})]


def ledger_paid_per_day(conn, partner_id: int) -> list[int]:
    """What the ledger paid for each check-in day: its first payment and every correction since."""
    return list(conn.execute(text(
        "SELECT (SELECT SUM(amount) FROM xp_ledger WHERE idempotency_key LIKE 'checkin:' || c.partner_id "
        "|| ':' || c.day || '%') FROM checkin AS c WHERE c.partner_id = :p ORDER BY c.day"),
        {"p": partner_id}).scalars())


def assert_ledger_chain(conn, partner_id: int) -> list[int]:
    """Each ledger row's balance_after is the one before plus its amount, ending at the partner's xp.

    Returns the balances, oldest first."""
    rows = conn.execute(text("SELECT amount, balance_after FROM xp_ledger WHERE partner_id = :p ORDER BY id"),
                        {"p": partner_id}).fetchall()
    balance_xp = 0
    for amount, balance_after in rows:
        balance_xp += amount
        assert balance_after == balance_xp, f"ledger chain of partner {partner_id} breaks: {rows}"
    assert balance_xp == partner_row(conn, partner_id).xp
    return [balance_after for _, balance_after in rows]


@pytest.mark.parametrize(("plan", "multiplier", "total_xp"), [("regular", 1, 250), ("PRO", 5, 1_250)])
def test_ten_days_of_one_partner_sent_at_once_pay_what_ten_days_in_order_pay(
        client, conn, lock_workers, plan, multiplier, total_xp):
    partner_id = 500 + multiplier
    if plan == "PRO":
        make_pro(client, partner_id)
    else:
        assert run(client, contract.PARTNER_UPDATE, partner_id=partner_id, timezone="UTC",
                   occurred_at=at(-30))["status"] == "applied"
    # Latest day first: most of them arrive after a later day was paid.
    jobs = [checkin_job(partner_id, day) for day in reversed(range(10))]

    results = hold_and_release(lock_workers, partner_id, jobs)

    assert statuses(results) == ["applied"] * 10
    row = partner_row(conn, partner_id)
    assert (row.xp, row.checkin_streak, row.longest_streak, row.total_checkins) == (total_xp, 10, 10, 10)
    assert checkin_rows(conn, partner_id) == day_prices(range(1, 11), multiplier)
    assert ledger_paid_per_day(conn, partner_id) == [xp for *_, xp in day_prices(range(1, 11), multiplier)]
    assert_ledger_chain(conn, partner_id)


def test_deductions_sent_at_once_take_only_what_the_balance_covers(client, conn, lock_workers):
    assert adjust(client, 510, 200, "grant-510")["status"] == "applied"
    deductions = [(contract.ADJUST, {"partner_id": 510, "amount": -100, "reason": "chargeback",
                                     "request_id": f"chargeback-510-{n}"}) for n in range(6)]

    results = hold_and_release(lock_workers, 510, deductions)

    # Whatever the order, two deductions fit in 200 XP and four are refused
    # on the balance each one saw under the lock.
    assert sorted(statuses(results)) == ["applied"] * 2 + ["rejected"] * 4
    assert {result["reason"] for result in results if result["status"] == "rejected"} == {"insufficient_xp"}
    assert partner_row(conn, 510).xp == 0
    assert assert_ledger_chain(conn, 510) == [200, 100, 0]
    assert count(conn, "job_failure") == 0


def test_claims_queued_behind_the_checkin_that_finishes_an_action_task_pay_once(client, conn, lock_workers):
    assert run(client, contract.TASK_START, partner_id=520, task_id="daily_checkin_5",
               occurred_at=at(0))["status"] == "applied"
    for day in range(4):
        assert run(client, contract.CHECKIN, **checkin_job(520, day)[1])["status"] == "applied"
    # The fifth day queues first, so every claim measures progress after it.
    claims = [claim_job(520, "daily_checkin_5", 4)] * 3

    fifth_day, *claimed = hold_and_release(lock_workers, 520, [checkin_job(520, 4)], claims)

    assert (fifth_day["status"], fifth_day["streak"]) == ("applied", 5)
    assert sorted(statuses(claimed)) == ["applied", "duplicate", "duplicate"], claimed
    assert {result["xp_granted"] for result in claimed} == {250}
    row = partner_row(conn, 520)
    assert (row.xp, row.checkin_streak, row.total_checkins) == (50 + 250, 5, 5)
    assert checkin_rows(conn, 520) == day_prices(range(1, 6), 1)
    assert assert_ledger_chain(conn, 520) == [10, 20, 30, 40, 50, 300]


def test_claims_queued_behind_the_referral_that_finishes_a_referral_task_pay_once(client, conn, lock_workers):
    assert run(client, contract.TASK_START, partner_id=530, task_id="invite_3_friends",
               occurred_at=at(0))["status"] == "applied"
    for referee_id in (531, 532):
        assert refer(client, 530, referee_id, day=1)["status"] == "applied"
    third = (contract.REFERRAL_RECORD, {"referrer_id": 530, "referee_id": 533, "occurred_at": at(1)})
    claims = [claim_job(530, "invite_3_friends", 1)] * 3

    referred, *claimed = hold_and_release(lock_workers, 530, [third], claims)

    assert (referred["status"], referred["referral_count"]) == ("applied", 3)
    assert sorted(statuses(claimed)) == ["applied", "duplicate", "duplicate"], claimed
    assert {result["xp_granted"] for result in claimed} == {500}
    row = partner_row(conn, 530)
    assert (row.xp, row.referral_count) == (500, 3)
    assert assert_ledger_chain(conn, 530) == [500]


def test_claims_batches_naming_two_partners_in_opposite_orders_wait_for_each_other_without_deadlock(
        client, conn, lock_workers):
    for partner_id in (540, 541):
        assert run(client, contract.TASK_START, partner_id=partner_id, task_id="telegram_bot",
                   occurred_at=at(0))["status"] == "applied"
    claims = {partner_id: {"job": contract.TASK_CLAIM, "kwargs": claim_job(partner_id, "telegram_bot", 0)[1]}
              for partner_id in (540, 541)}
    # Applied in the order sent, each batch would hold its first partner and wait for the
    # other's: a deadlock, one batch aborted and retried. Locking both in id order first avoids it.
    forward = (contract.CLAIMS_BATCH, {"items": [claims[540], claims[541]]})
    backward = (contract.CLAIMS_BATCH, {"items": [claims[541], claims[540]]})
    job_ids: list[str] = []
    with holding_partners(540, 541) as holder:
        for queued, batch in enumerate((forward, backward), start=1):
            job_ids += lock_workers.send([batch])
            holder.wait_for_waiters(queued, f"{queued} claims batches to queue on the partners' rows",
                                    lambda: lock_workers.problem() or lock_workers.finished_early(job_ids),
                                    timeout_s=STARTUP_AND_QUEUE_WAIT_S)
    first, second = lock_workers.results(job_ids)

    assert [app.AsyncResult(job_id).retries for job_id in job_ids] == [0, 0], lock_workers.logs()
    assert statuses(first["items"]) == ["applied", "applied"]
    assert statuses(second["items"]) == ["duplicate", "duplicate"]
    assert (partner_row(conn, 540).xp, partner_row(conn, 541).xp) == (100, 100)
