"""Enqueue-to-commit latency at a steady rate below the worker's capacity.

Producers send at a fixed pace while a worker runs; each job's result
carries `date_done`, stamped by the worker just after the job's transaction
committed, on the same machine's clock as the send time, which is taken
before the send call (a send that blocks counts). Three shapes:

- per_job: one thread, one `rewards.checkin` per message;
- per_action: THREADS threads sharing a coalescing client, each paced at
  its share of the rate (a batch's date_done is when the batch committed);
- claims: one thread, one `rewards.task.claim` per message, each partner's
  start applied beforehand.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timezone

from benchmarks import workload
from benchmarks.actions import TASK_ID, in_threads
from benchmarks.worker import Worker
from rewards import contract
from rewards.client import RewardsClient

RESULT_TIMEOUT_S = 120
WARM_UP_S = 3  # the pool's children are up, connected, and have imported the jobs


@dataclass(frozen=True)
class Latency:
    per_s: float
    jobs: int
    p50_ms: float
    p99_ms: float


Send = Callable[[dict], object]  # one payload -> its result handle


def _paced(send: Send, payloads: list[dict], per_s: float) -> list[tuple[float, object]]:
    sent = []
    started = time.monotonic()
    for index, payload in enumerate(payloads):
        pause_s = started + index / per_s - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        sent.append((time.time(), send(payload)))
    return sent


def _latency_ms(sent_at: float, result) -> float:
    result.get(timeout=RESULT_TIMEOUT_S)
    done = result.date_done
    if done.tzinfo is None:
        done = done.replace(tzinfo=timezone.utc)
    return (done.timestamp() - sent_at) * 1000


def _summary(per_s: float, latencies_ms: list[float]) -> Latency:
    cuts = statistics.quantiles(latencies_ms, n=100)
    return Latency(per_s, len(latencies_ms), cuts[49], cuts[98])


def per_job(client: RewardsClient, per_s: float, duration_s: float) -> Latency:
    payloads = workload.checkins(max(100, int(per_s * duration_s)))
    with Worker("checkins") as worker:
        worker.wait_until(lambda: worker.rss_kib() > 0, "starting")
        time.sleep(WARM_UP_S)
        sent = _paced(lambda p: client.checkin(p["partner_id"], p["occurred_at"]), payloads, per_s)
        return _summary(per_s, [_latency_ms(sent_at, result) for sent_at, result in sent])


def per_action(per_s: float, duration_s: float, threads: int, linger_ms: int) -> Latency:
    payloads = workload.checkins(max(100, int(per_s * duration_s)))
    client = RewardsClient(linger_ms=linger_ms)
    latencies_ms: list[float] = []
    lock = threading.Lock()

    def send_share(share: list[dict]) -> None:
        sent = _paced(lambda p: client.checkin(p["partner_id"], p["occurred_at"]), share, per_s / threads)
        measured = [_latency_ms(sent_at, result) for sent_at, result in sent]
        with lock:
            latencies_ms.extend(measured)
    try:
        with Worker("checkins") as worker:
            worker.wait_until(lambda: worker.rss_kib() > 0, "starting")
            time.sleep(WARM_UP_S)
            in_threads(workload.split_by_partner(payloads, threads), send_share)
    finally:
        client.close()
    return _summary(per_s, latencies_ms)


def claims(client: RewardsClient, per_s: float, duration_s: float) -> Latency:
    partners = max(100, int(per_s * duration_s))
    at = workload.START.isoformat()
    later = workload.START.replace(hour=10).isoformat()
    with Worker("claims") as worker:
        for partner_id in range(1, partners + 1):
            client.send(contract.TASK_START, ignore_result=True, partner_id=partner_id, task_id=TASK_ID,
                        occurred_at=at)
        worker.wait_until(lambda: worker.pending() == 0, "applying the starts")
        sent = _paced(lambda p: client.claim_task(p["partner_id"], TASK_ID, later),
                      [{"partner_id": partner_id} for partner_id in range(1, partners + 1)], per_s)
        return _summary(per_s, [_latency_ms(sent_at, result) for sent_at, result in sent])
