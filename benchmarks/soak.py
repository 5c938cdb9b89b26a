"""Worker memory over a long run: RSS after warm-up and at the end of BENCH_SOAK check-ins.

The producer keeps the queue topped up rather than enqueueing everything at
once, so Redis holds a few thousand messages, not the whole soak.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from benchmarks import workload
from benchmarks.worker import Worker, broker
from rewards.client import RewardsClient

QUEUE_HIGH_WATER = 4_000
REFILL = 1_000
GROWTH_MAX = 0.10


@dataclass(frozen=True)
class Soak:
    checkins: int
    rss_before_kib: int
    rss_after_kib: int

    @property
    def growth(self) -> float:
        return self.rss_after_kib / self.rss_before_kib - 1


def run(client: RewardsClient, count: int) -> Soak:
    payloads = workload.checkins(count)
    warm_at = count // 10
    before_kib = 0
    queue = broker()
    with Worker("checkins") as worker:
        sent, next_report = 0, warm_at
        started_s = time.perf_counter()
        while sent < count or worker.pending():
            if sent < count and queue.llen("checkins") < QUEUE_HIGH_WATER - REFILL:
                for payload in payloads[sent:sent + REFILL]:
                    client.checkin(payload["partner_id"], payload["occurred_at"], ignore_result=True)
                sent = min(count, sent + REFILL)
            done = sent - worker.pending()
            if not before_kib and done >= warm_at:
                before_kib = worker.rss_kib()
            if done >= next_report:
                print(f"  soak: {done:,}/{count:,} check-ins, {done / (time.perf_counter() - started_s):,.0f}/s, "
                      f"worker RSS {worker.rss_kib() / 1024:.1f} MiB", flush=True)
                next_report += warm_at
            time.sleep(0.05)
        return Soak(count, before_kib, worker.rss_kib())
