"""Enqueue-to-commit latency at a steady rate below the worker's capacity.

The producer sends check-ins at a fixed pace while a worker runs; each
job's result carries `date_done`, stamped by the worker just after the
job's transaction committed, on the same machine's clock as the send time.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from datetime import timezone

from benchmarks import workload
from benchmarks.worker import Worker
from rewards.client import RewardsClient

RESULT_TIMEOUT_S = 120


@dataclass(frozen=True)
class Latency:
    per_s: float
    jobs: int
    p50_ms: float
    p99_ms: float


def _paced_send(client: RewardsClient, payloads: list[dict], per_s: float) -> list[tuple[float, object]]:
    sent = []
    started = time.monotonic()
    for index, payload in enumerate(payloads):
        pause_s = started + index / per_s - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        sent.append((time.time(), client.checkin(payload["partner_id"], payload["occurred_at"])))
    return sent


def measure(client: RewardsClient, per_s: float, duration_s: float) -> Latency:
    payloads = workload.checkins(max(100, int(per_s * duration_s)))
    with Worker("checkins") as worker:
        worker.wait_until(lambda: worker.rss_kib() > 0, "starting")
        time.sleep(3)  # the pool's children are up and have imported the jobs
        sent = _paced_send(client, payloads, per_s)
        latencies_ms = []
        for sent_at, result in sent:
            result.get(timeout=RESULT_TIMEOUT_S)
            done = result.date_done
            if done.tzinfo is None:
                done = done.replace(tzinfo=timezone.utc)
            latencies_ms.append((done.timestamp() - sent_at) * 1000)
    cuts = statistics.quantiles(latencies_ms, n=100)
    return Latency(per_s, len(payloads), cuts[49], cuts[98])
