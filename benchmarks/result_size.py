"""Redis bytes per stored job result, as a production worker stores them (not a test).

    REWARDS_DATABASE_URL=postgresql+psycopg://postgres@127.0.0.1:5432/rewards_bench \\
    CELERY_BROKER_URL=redis://127.0.0.1:6379/4 CELERY_RESULT_BACKEND=redis://127.0.0.1:6379/5 \\
        .venv/bin/python -m benchmarks.result_size              # RESULT_SIZE_JOBS=300

Empties its database and both Redis databases first, as `make bench` does:
give it its own. For `result_extended` on and off it starts the production
worker (prefork x2, celeryconfig's settings but that one), sends
RESULT_SIZE_JOBS check-ins and task claims and a tenth as many batches of
100, waits for every
result and reads each `celery-task-meta-*` key: its JSON (STRLEN), Redis's
MEMORY USAGE for it, and the growth of INFO's used_memory per result (which
also counts the expiry entry). Then what 10 million check-ins (or claims) a day
hold at celeryconfig's `result_expires`, sent one per job or in batches. Figures are bytes; the Redis is a shared
instance's, so used_memory is the noisier one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import redis
from celery.result import AsyncResult

import celeryconfig
from benchmarks import checks
from benchmarks.worker import REPO_ROOT
from rewards import contract
from rewards import settings as settings_module
from rewards.cli.tables import render
from rewards.client import RewardsClient

JOBS = int(os.environ.get("RESULT_SIZE_JOBS", 300))
BATCH_ITEMS = 100
BATCHES = max(10, JOBS // 10)
JOBS_PER_DAY = 10_000_000
RESULT_TIMEOUT_S = 120
DAY = datetime(2026, 3, 2, 9, tzinfo=timezone.utc)
TASK_ID = "telegram_bot"          # a social task: claimable as soon as it is started


@dataclass(frozen=True)
class Size:
    kind: str
    extended: bool
    json_b: float
    memory_usage_b: float
    used_memory_b: float


@contextmanager
def worker(extended: bool) -> Iterator[None]:
    """The production worker with `result_extended` set as asked, stopped on exit."""
    argv = [sys.executable, "-m", "benchmarks.result_size", "--worker", "on" if extended else "off"]
    process = subprocess.Popen(argv, cwd=REPO_ROOT, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(60)


def serve(extended: bool) -> None:
    from workers import app

    app.conf.result_extended = extended      # set before the pool forks: its children store the results
    app.worker_main(["worker", "-Q", ",".join(contract.QUEUES), "-c", "2", "-P", "prefork",
                     "--loglevel=WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"])


def measure(client: RewardsClient, kind: str, extended: bool, send: Callable[[], list[AsyncResult]]) -> Size:
    """Send one kind of job, wait for every result, and size the keys they left."""
    store = redis.Redis.from_url(settings_module.get().result_backend)
    store.memory_purge()          # hand freed pages back, so used_memory grows by what the results hold
    used_before_b = store.info("memory")["used_memory"]
    results = send()
    for result in results:
        result.get(timeout=RESULT_TIMEOUT_S)
    used_after_b = store.info("memory")["used_memory"]
    keys = [client.app.backend.get_key_for_task(result.id) for result in results]
    json_b = sum(store.strlen(key) for key in keys)
    memory_usage_b = sum(store.memory_usage(key, samples=0) for key in keys)
    count = len(keys)
    return Size(kind, extended, json_b / count, memory_usage_b / count, (used_after_b - used_before_b) / count)


def checkins(client: RewardsClient, first_partner_id: int) -> list[AsyncResult]:
    return [client.checkin(partner_id, DAY) for partner_id in range(first_partner_id, first_partner_id + JOBS)]


def batches(client: RewardsClient, first_partner_id: int) -> list[AsyncResult]:
    items = [(partner_id, DAY + timedelta(days=1)) for partner_id in
             range(first_partner_id, first_partner_id + BATCHES * BATCH_ITEMS)]
    return client.checkin_many(items, batch_max=BATCH_ITEMS)


def start_tasks(client: RewardsClient, first_partner_id: int) -> None:
    """What a claim needs first; their results are dropped before the claims are measured."""
    for started in [client.start_task(partner_id, TASK_ID, DAY)
                    for partner_id in range(first_partner_id, first_partner_id + JOBS)]:
        started.get(timeout=RESULT_TIMEOUT_S)
        started.forget()


def claims(client: RewardsClient, first_partner_id: int) -> list[AsyncResult]:
    return [client.claim_task(partner_id, TASK_ID, DAY + timedelta(hours=1))
            for partner_id in range(first_partner_id, first_partner_id + JOBS)]


def sizes(extended: bool) -> list[Size]:
    checks.reset()
    client = RewardsClient()
    try:
        with worker(extended):
            # Connections, buffers and the pool warm before anything is measured.
            for warming in checkins(client, 1_000_000):
                warming.get(timeout=RESULT_TIMEOUT_S)
            start_tasks(client, 1)
            # Each kind is applied, never a duplicate: a batch's check-ins are another day's.
            return [measure(client, "check-in", extended, lambda: checkins(client, 1)),
                    measure(client, f"batch of {BATCH_ITEMS}", extended, lambda: batches(client, 1)),
                    measure(client, "task claim", extended, lambda: claims(client, 1))]
    finally:
        client.close()


def held_gib(bytes_per_result: float, items_per_job: int) -> float:
    """Redis memory JOBS_PER_DAY check-ins or claims a day hold at celeryconfig's result_expires.

    Spread evenly over the day; a peak hour at twice the average holds twice as much.
    """
    held = JOBS_PER_DAY / items_per_job * min(1.0, celeryconfig.result_expires / 86_400)
    return held * bytes_per_result / 2**30


def main() -> None:
    rows = []
    for extended in (celeryconfig.result_extended, not celeryconfig.result_extended):
        for size in sizes(extended):
            items = BATCH_ITEMS if size.kind.startswith("batch") else 1
            worst_b = max(size.memory_usage_b, size.used_memory_b)
            rows.append([size.kind, "on" if size.extended else "off", round(size.json_b),
                         round(size.memory_usage_b), round(size.used_memory_b), f"{held_gib(worst_b, items):.2f}"])
    print(f"{JOBS} jobs a kind ({BATCHES} batches); bytes per result; GiB held at result_expires "
          f"{celeryconfig.result_expires} s for {JOBS_PER_DAY:,} check-ins (or claims) a day sent that way:")
    print(render(["job", "extended", "JSON B", "MEMORY USAGE B", "used_memory B", "GiB held"], rows))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        serve(sys.argv[2] == "on")
    else:
        main()
