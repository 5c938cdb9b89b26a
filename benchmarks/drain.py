"""Drain-rate benchmark: check-in jobs against Celery's own no-op, side by side.

Enqueues N messages on the real Redis broker, starts a real worker process
(prefork, two processes, as in production), and times from the first message
taken to the last one acknowledged. Figures are noisy on a shared machine;
the ratio between the two runs is what counts (DESIGN.md section 11 aims for
check-ins at 0.8x or more of the no-op rate).

    make bench                       # N=4000
    BENCH_JOBS=10000 make bench
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis
from sqlalchemy import text

from rewards import db
from rewards import settings as settings_module
from rewards.client import RewardsClient
from rewards.tables import render

REPO_ROOT = Path(__file__).resolve().parents[1]
PARTNERS = 500
START = datetime(2026, 1, 1, 12, 0, tzinfo=timezone.utc)


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings_module.get().broker_url)


def reset() -> None:
    broker().flushdb()
    redis.Redis.from_url(settings_module.get().result_backend).flushdb()
    with db.transaction() as conn:
        conn.execute(text("TRUNCATE job_failure, audit_event, xp_ledger, checkin, partner RESTART IDENTITY CASCADE"))


def enqueue_noops(client: RewardsClient, count: int) -> str:
    for _ in range(count):
        client.app.send_task("celery.ping", queue="checkins")
    return "checkins"


def enqueue_checkins(client: RewardsClient, count: int) -> str:
    # Day-major order: one partner's next day is PARTNERS messages behind.
    for index in range(count):
        day, partner_id = divmod(index, PARTNERS)
        client.checkin(partner_id + 1, occurred_at=(START + timedelta(days=day)).isoformat())
    return "checkins"


def drain(queue: str, count: int) -> float:
    """Start a worker, return messages per second from first take to last ack."""
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queue, "-c", "2",
               "-P", "prefork", "-I", "celery.contrib.testing.tasks", "--loglevel=WARNING",
               "--without-heartbeat", "--without-mingle", "--without-gossip"]
    worker = subprocess.Popen(command, cwd=REPO_ROOT, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = broker()
    try:
        while client.llen(queue) >= count:
            time.sleep(0.005)
        started = time.perf_counter()
        while client.llen(queue) or client.hlen("unacked"):
            time.sleep(0.005)
        return count / (time.perf_counter() - started)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(60)


def applied_checkins() -> int:
    with db.get_engine().connect() as conn:
        return conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar()


def main() -> int:
    count = int(os.environ.get("BENCH_JOBS", "4000"))
    client = RewardsClient()
    rows = []
    for name, enqueue in (("celery no-op (celery.ping)", enqueue_noops),
                          ("rewards.checkin", enqueue_checkins)):
        reset()
        print(f"{name}: enqueueing {count:,} messages…", flush=True)
        rate = drain(enqueue(client, count), count)
        rows.append([name, count, round(rate)])
    applied = applied_checkins()
    client.close()
    noop_rate, checkin_rate = rows[0][2], rows[1][2]
    print()
    print(render(["job", "messages", "per second"], rows,
                 title="Drain rate, one worker, prefork x2, Redis broker, PostgreSQL"))
    print(f"\ncheck-in / no-op ratio: {checkin_rate / noop_rate:.2f} (aim: 0.80 or more)")
    print(f"check-ins applied: {applied:,} of {count:,}")
    return 0 if applied == count else 1


if __name__ == "__main__":
    sys.exit(main())
