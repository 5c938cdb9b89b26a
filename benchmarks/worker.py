"""A real worker process, as deployed, and the drain rate of a pre-filled queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import redis

from rewards import settings as settings_module

REPO_ROOT = Path(__file__).resolve().parents[1]
CONCURRENCY = 2
POLL_S = 0.005
DRAIN_TIMEOUT_S = 3_600


def command(queue: str) -> list[str]:
    """The production worker (prefork x2, celeryconfig's settings: events on, results stored)."""
    return [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", queue,
            "-c", str(CONCURRENCY), "-P", "prefork", "-I", "celery.contrib.testing.tasks",
            "--loglevel=WARNING", "--without-heartbeat", "--without-mingle", "--without-gossip"]


def shown(argv: list[str]) -> str:
    return " ".join(["celery", *argv[3:]])


def broker() -> redis.Redis:
    return redis.Redis.from_url(settings_module.get().broker_url)


def rss_kib(pid: int) -> int:
    """Resident memory of a process and all its descendants (Linux /proc)."""
    total = 0
    try:
        with open(f"/proc/{pid}/status") as status:
            total += next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            total += sum(rss_kib(int(child)) for child in children.read().split())
    except (FileNotFoundError, ProcessLookupError, StopIteration):
        pass
    return total


@dataclass
class Drain:
    per_s: float
    rss_before_kib: int
    rss_after_kib: int


class Worker:
    """`celery -A workers worker` as a subprocess of its own session, stopped on exit."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self.argv = command(queue)
        self.process = subprocess.Popen(self.argv, cwd=REPO_ROOT, start_new_session=True,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self) -> Worker:
        return self

    def __exit__(self, *_) -> None:
        os.killpg(self.process.pid, signal.SIGTERM)
        self.process.wait(60)

    def rss_kib(self) -> int:
        return rss_kib(self.process.pid)

    def pending(self) -> int:
        client = broker()
        return client.llen(self.queue) + client.hlen("unacked")

    def wait_until(self, done: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while not done():
            if self.process.poll() is not None:
                raise RuntimeError(f"the worker exited ({self.process.returncode}) while {what}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out while {what}")
            time.sleep(POLL_S)

    def drain(self, messages: int, items: int) -> Drain:
        """Items per second from the first message taken to the last acknowledged.

        RSS is sampled once a tenth of the queue is done (imports, pools and
        statement caches warm) and again at the end.
        """
        client = broker()
        self.wait_until(lambda: client.llen(self.queue) < messages, "waiting for the first take")
        started = time.perf_counter()
        self.wait_until(lambda: self.pending() <= messages * 0.9, "draining")
        before_kib = self.rss_kib()
        self.wait_until(lambda: self.pending() == 0, "draining")
        per_s = items / (time.perf_counter() - started)
        return Drain(per_s, before_kib, self.rss_kib())
