"""The check-in function without a broker: one check-in per transaction, N processes.

Each process validates the payload and applies it in its own transaction,
exactly what a worker's job body does, minus Celery. Partners are split
between processes so each partner's days stay in order.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from datetime import timedelta

from benchmarks import workload
from rewards import db
from rewards import settings as settings_module
from rewards.contract.payloads import CheckinJob
from rewards.ledger.checkins import apply_checkin
from rewards.models import utcnow


@dataclass(frozen=True)
class Share:
    started_s: float
    ended_s: float
    cpu_s: float
    checkins: int


def _apply_share(payloads: list[dict[str, object]], queue: multiprocessing.Queue) -> None:
    current = settings_module.get()
    tolerance = timedelta(seconds=current.future_tolerance_s)
    db.get_engine()  # this process's pool, before the clock starts
    cpu_started_s, started_s = time.process_time(), time.perf_counter()
    for payload in payloads:
        job = CheckinJob.model_validate(payload)
        with db.transaction() as conn:
            apply_checkin(conn, job, current.policy, now=utcnow(), future_tolerance=tolerance)
    queue.put(Share(started_s, time.perf_counter(), time.process_time() - cpu_started_s, len(payloads)))


@dataclass(frozen=True)
class Direct:
    processes: int
    per_s: float
    cpu_ms_per_checkin: float


def run(payloads: list[dict[str, object]], processes: int) -> Direct:
    """Check-ins per second over all processes; CPU is the processes' own, per check-in."""
    # A forked child must not inherit pooled connections: closing them there
    # would end the parent's sessions too.
    db.get_engine().dispose()
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_apply_share, args=(share, queue))
                for share in workload.split_by_partner(payloads, processes)]
    for child in children:
        child.start()
    shares = [queue.get(timeout=3_600) for _ in children]
    for child in children:
        child.join()
        if child.exitcode:
            raise RuntimeError(f"a direct process exited with {child.exitcode}")
    elapsed_s = max(s.ended_s for s in shares) - min(s.started_s for s in shares)
    checkins = sum(s.checkins for s in shares)
    return Direct(processes, checkins / elapsed_s, 1000 * sum(s.cpu_s for s in shares) / checkins)
