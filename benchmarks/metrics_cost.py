"""What counting a job costs a worker (rewards.metrics): `python -m benchmarks.metrics_cost`.

Times rewards.metrics' calls for one job (outcome, duration, latency, the
XP tally) and for one 500-item batch message, kept in memory and in the
multiprocess files a worker with REWARDS_METRICS_PORT writes.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

JOBS = 20_000
BATCHES = 500
BATCH_ITEMS = 500

MEASURE = f"""
import time
from rewards import contract, metrics
from rewards.contract.results import BatchResult, Outcome

applied = Outcome("applied")
started = time.perf_counter()
for _ in range({JOBS}):
    metrics.count_job(contract.CHECKIN, applied, 0.003, sent_at=time.time() - 0.01, now_s=time.time())
    with metrics.xp_tally() as tally:
        metrics.tally_xp("checkin", 10)
    metrics.count_xp(tally)
per_job_us = (time.perf_counter() - started) / {JOBS} * 1e6
batch = BatchResult.of([applied] * {BATCH_ITEMS}).outcome()
started = time.perf_counter()
for _ in range({BATCHES}):
    metrics.count_job(contract.CHECKIN_BATCH, batch, 0.05, sent_at=time.time(), now_s=time.time(),
                      item_jobs=[contract.CHECKIN] * {BATCH_ITEMS})
per_batch_ms = (time.perf_counter() - started) / {BATCHES} * 1e3
print(f"{{per_job_us:.1f}} {{per_batch_ms:.3f}}")
"""


def measure(multiprocess_dir: str | None) -> tuple[float, float]:
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"}
    if multiprocess_dir:
        env["PROMETHEUS_MULTIPROC_DIR"] = multiprocess_dir
    out = subprocess.run([sys.executable, "-c", MEASURE], env=env, capture_output=True, text=True, check=True)
    per_job_us, per_batch_ms = out.stdout.split()
    return float(per_job_us), float(per_batch_ms)


def main() -> None:
    in_memory = measure(None)
    with tempfile.TemporaryDirectory(prefix="rewards-metrics-") as folder:
        files = measure(folder)
    print(f"counting per job ({JOBS:,}), per {BATCH_ITEMS}-item batch message ({BATCHES})")
    print(f"{'kept':<20}{'per job':>12}{'per batch':>14}")
    for kept, (per_job_us, per_batch_ms) in (("in memory", in_memory), ("multiprocess files", files)):
        print(f"{kept:<20}{per_job_us:>9.1f} µs{per_batch_ms:>11.3f} ms")


if __name__ == "__main__":
    main()
