"""An app that sends one job per user action, from many threads; and claims, per job and batched.

per_action: THREADS producer threads share one coalescing RewardsClient, as
the request threads of one web process would; each calls `client.checkin()`
once per simulated action, then reads its results. The rate is check-ins
from the first call to the last result read (fire and forget: to the last
check-in committed), with the worker running all along.

claims: every partner starts the social task `telegram_bot`, then claims
it; the rate counted is the claims' drain, per job or batched, each on a
queue filled first, as per_job and batched are.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from sqlalchemy import text

from benchmarks import workload
from benchmarks.worker import Worker
from rewards import contract, db
from rewards.client import RewardsClient

RESULT_TIMEOUT_S = 600
TASK_ID = "telegram_bot"
_COMPLETED = text("SELECT COUNT(*) FROM partner_task WHERE status = 'COMPLETED'")
_CHECKINS = text("SELECT COUNT(*) FROM checkin")


@dataclass(frozen=True)
class Run:
    per_s: float
    messages: int


def in_threads(shares: list[list[dict]], send_share) -> None:
    errors: list[BaseException] = []

    def run(share: list[dict]) -> None:
        try:
            send_share(share)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)
    threads = [threading.Thread(target=run, args=(share,)) for share in shares]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise RuntimeError(f"{len(errors)} producer threads failed; the first: {errors[0]!r}")


def per_action(count: int, threads: int, linger_ms: int, *, ignore_result: bool) -> Run:
    """Check-ins per second through a coalescing client, `threads` producer threads sending one each call."""
    payloads = workload.checkins(count)
    shares = workload.split_by_partner(payloads, threads)
    client = RewardsClient(linger_ms=linger_ms)
    message_ids: set[str] = set()
    lock = threading.Lock()

    def send_share(share: list[dict]) -> None:
        handles = [client.checkin(p["partner_id"], p["occurred_at"], ignore_result=ignore_result) for p in share]
        with lock:
            message_ids.update(handle.message_id for handle in handles)
        if not ignore_result:
            for handle in handles:
                handle.get(timeout=RESULT_TIMEOUT_S)
    try:
        with Worker("checkins") as worker:
            worker.wait_until(lambda: worker.rss_kib() > 0, "starting")
            time.sleep(3)  # the pool's children are up and have imported the jobs
            started = time.perf_counter()
            in_threads(shares, send_share)
            if ignore_result:
                worker.wait_until(lambda: _count(_CHECKINS) == count, "applying the check-ins")
            per_s = count / (time.perf_counter() - started)
    finally:
        client.close()
    return Run(per_s, len(message_ids))


def claims(client: RewardsClient, partners: int, batch_size: int | None) -> Run:
    """Claims per second drained from a filled `claims` queue, after every partner has started the task."""
    at = workload.START.isoformat()
    later = workload.START.replace(hour=10).isoformat()
    starts = [(contract.TASK_START, {"partner_id": p, "task_id": TASK_ID, "occurred_at": at})
              for p in range(1, partners + 1)]
    claims_ = [(contract.TASK_CLAIM, {"partner_id": p, "task_id": TASK_ID, "occurred_at": later})
               for p in range(1, partners + 1)]
    with Worker("claims") as worker:
        _send(client, starts, batch_size)
        worker.wait_until(lambda: worker.pending() == 0, "applying the starts")
        messages = _send(client, claims_, batch_size)
        drain = worker.drain(messages, partners)
        worker.wait_until(lambda: _count(_COMPLETED) == partners, "completing every claim")
    return Run(drain.per_s, messages)


def _send(client: RewardsClient, jobs: list[tuple[str, dict]], batch_size: int | None) -> int:
    """Queue the jobs one per message, or `batch_size` per rewards.claims.batch; the messages sent."""
    if batch_size is None:
        for name, kwargs in jobs:
            client.send(name, ignore_result=True, **kwargs)
        return len(jobs)
    return len(client.claims_many(jobs, batch_max=batch_size, ignore_result=True))


def _count(statement) -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(statement).scalar_one()
