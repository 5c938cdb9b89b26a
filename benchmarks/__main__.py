"""`make bench`: every throughput figure of the check-in and claim paths, side by side, in one run.

    make bench                                # BENCH_JOBS=4000
    BENCH_JOBS=10000 make bench
    BENCH_SOAK=200000 make bench              # also worker RSS over a long run
    BENCH_PATHS=batched,direct make bench     # only some rows, while working on one path

Rows, all in check-ins (or no-op messages) per second, each on an emptied
database and the bench's own Redis numbers:

- noop: Celery's `celery.ping` drained by the production worker (events on,
  results stored);
- per_job: `rewards.checkin`, one check-in per message, the same worker;
  per_job_ff: the same, sent with ignore_result (fire and forget);
- batched: `rewards.checkin.batch`, BENCH_BATCH check-ins per message;
- per_action: BENCH_THREADS (16) producer threads, one `client.checkin()`
  per call through a coalescing client (REWARDS_CLIENT_LINGER_MS, BENCH_LINGER_MS,
  default 5), results read; per_action_ff: the same, fire and forget
  (benchmarks/actions.py);
- claims: `rewards.task.claim` drained one per message after every partner
  started the task; claims_batched: the same as `rewards.claims.batch`,
  BENCH_BATCH per message (the reference document's aim: 500 claims/s);
- direct: the check-in function without a broker, at its best process count;
- sql_limit: pgbench replaying the engine's own per-check-in SQL, at its best
  client count;
- sql_set_limit: pgbench replaying the batched path's own SQL, 500 check-ins
  per transaction, at its best client count (benchmarks/sql_set_limit.py);
- latency: enqueue-to-commit p50/p99 of per_job, per_action and claims, each
  at half the rate it drained at (benchmarks/latency.py).

After each engine run the database is checked (every check-in applied once,
the invariants, a full reconcile); the exit status is 1 if any check failed.
Figures are noisy on a shared machine; the ratios of one run are what count.
"""

from __future__ import annotations

import os
import sys

from benchmarks import actions, checks, direct, latency, soak, sql_limit, sql_set_limit, workload
from benchmarks.worker import Worker, command, shown
from rewards import contract
from rewards.cli.tables import render
from rewards.client import RewardsClient

DIRECT_PROCESSES = (1, 2, 4)
LATENCY_DURATION_S = 10


class Bench:
    def __init__(self, count: int, batch_size: int) -> None:
        self.count = count
        self.batch_size = batch_size
        self.threads = int(os.environ.get("BENCH_THREADS", "16"))
        self.linger_ms = int(os.environ.get("BENCH_LINGER_MS", "5"))
        self.client = RewardsClient()
        self.rows: list[list[object]] = []
        self.rates: dict[str, float] = {}
        self.failures: list[str] = []
        self.notes: list[str] = []

    def record(self, name: str, checkins: int, messages: int, per_s: float, how: str) -> None:
        self.rates[name] = per_s
        self.rows.append([name, checkins, messages, round(per_s), how])
        print(f"  {name}: {per_s:,.0f}/s", flush=True)

    def check(self, name: str, expected: int) -> None:
        found = checks.problems(expected)
        self.failures.extend(f"{name}: {problem}" for problem in found)
        if found:
            print(f"  {name}: CHECK FAILED: {'; '.join(found)}", flush=True)

    def drained(self, name: str, messages: int, checkins: int, enqueue) -> None:
        checks.reset()
        print(f"{name}: enqueueing {messages:,} messages…", flush=True)
        enqueue()
        with Worker("checkins") as worker:
            drain = worker.drain(messages, checkins)
        self.record(name, checkins, messages, drain.per_s, "worker")
        if name == "per_job":
            self.notes.append(f"worker RSS during per_job: {drain.rss_before_kib / 1024:.1f} MiB after "
                              f"10% of the queue, {drain.rss_after_kib / 1024:.1f} MiB at the end")

    def noop(self) -> None:
        def enqueue():
            for _ in range(self.count):
                self.client.app.send_task("celery.ping", queue=contract.QUEUE_CHECKINS)
        self.drained("noop", self.count, self.count, enqueue)

    def per_job(self, name: str, ignore_result: bool) -> None:
        payloads = workload.checkins(self.count)

        def enqueue():
            for payload in payloads:
                self.client.checkin(payload["partner_id"], payload["occurred_at"], ignore_result=ignore_result)
        self.drained(name, self.count, self.count, enqueue)
        self.check(name, self.count)

    def batched(self) -> None:
        if not hasattr(contract, "CHECKIN_BATCH"):
            self.notes.append("batched: rewards.checkin.batch does not exist in this version")
            return
        batches = workload.chunks(workload.checkins(self.count), self.batch_size)

        def enqueue():
            for batch in batches:
                self.client.checkin_many(batch)
        self.drained("batched", len(batches), self.count, enqueue)
        self.check("batched", self.count)

    def per_action(self, name: str, ignore_result: bool) -> None:
        checks.reset()
        print(f"{name}: {self.count:,} check-ins from {self.threads} threads, linger {self.linger_ms} ms…",
              flush=True)
        run = actions.per_action(self.count, self.threads, self.linger_ms, ignore_result=ignore_result)
        self.record(name, self.count, run.messages, run.per_s, f"{self.threads} threads, linger {self.linger_ms} ms")
        self.check(name, self.count)

    def claims(self, name: str, batch_size: int | None) -> None:
        checks.reset()
        print(f"{name}: {self.count:,} partners start, then claim…", flush=True)
        run = actions.claims(self.client, self.count, batch_size)
        self.record(name, self.count, run.messages, run.per_s, "worker")

    def direct(self) -> None:
        best, cpu_ms = None, None
        for processes in DIRECT_PROCESSES:
            checks.reset()
            print(f"direct: {processes} process(es)…", flush=True)
            result = direct.run(workload.checkins(self.count), processes)
            print(f"  {result.per_s:,.0f}/s, {result.cpu_ms_per_checkin:.2f} ms CPU per check-in", flush=True)
            self.check(f"direct x{processes}", self.count)
            cpu_ms = result.cpu_ms_per_checkin if cpu_ms is None else cpu_ms
            best = result if best is None or result.per_s > best.per_s else best
        self.record("direct", self.count, 0, best.per_s, f"{best.processes} process(es)")
        self.notes.append(f"client CPU per check-in (direct, 1 process): {cpu_ms:.2f} ms")

    def sql_limit(self) -> None:
        print("sql_limit: pgbench…", flush=True)
        result = sql_limit.run(max(self.count, 4_000) * 2, checks.reset)
        self.record("sql_limit", result.transactions, 0, result.per_s, f"{result.clients} clients")
        self.notes.append(f"sql_limit: {result.statements} statements per check-in; {result.command}")

    def sql_set_limit(self) -> None:
        print(f"sql_set_limit: pgbench, {sql_set_limit.BATCH} check-ins per transaction…", flush=True)
        result = sql_set_limit.run(max(self.count, 4_000) * 4, checks.reset)
        self.record("sql_set_limit", result.checkins, 0, result.per_s, f"{result.clients} client(s)")
        self.notes.append(f"sql_set_limit: {result.statements} statements per {sql_set_limit.BATCH} check-ins; "
                          f"{result.command}")

    def latency(self) -> None:
        """Enqueue-to-commit p50/p99 of per_job, per_action and claims, each at half the rate it drained at."""
        measures = {
            "per_job": lambda per_s: latency.per_job(self.client, per_s, LATENCY_DURATION_S),
            "per_action": lambda per_s: latency.per_action(per_s, LATENCY_DURATION_S, self.threads, self.linger_ms),
            "claims": lambda per_s: latency.claims(self.client, per_s, LATENCY_DURATION_S),
        }
        for name, measure in measures.items():
            if name not in self.rates:
                continue
            per_s = self.rates[name] / 2
            checks.reset()
            print(f"latency of {name}: {per_s:,.0f}/s for {LATENCY_DURATION_S} s…", flush=True)
            result = measure(per_s)
            if name != "claims":
                self.check(f"latency of {name}", result.jobs)
            self.notes.append(f"enqueue-to-commit, {name} at {result.per_s:,.0f}/s (half its rate), "
                              f"{result.jobs:,} jobs: p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms")

    def soak(self, count: int) -> None:
        checks.reset()
        print(f"soak: {count:,} check-ins through the per-job worker…", flush=True)
        result = soak.run(self.client, count)
        self.check("soak", count)
        self.notes.append(f"soak of {count:,} check-ins: worker RSS {result.rss_before_kib / 1024:.1f} MiB "
                          f"after 10%, {result.rss_after_kib / 1024:.1f} MiB at the end "
                          f"({result.growth:+.1%}; limit +{soak.GROWTH_MAX:.0%})")
        if result.growth >= soak.GROWTH_MAX:
            self.failures.append(f"soak: worker RSS grew {result.growth:.1%}")

    def report(self) -> None:
        print()
        if self.rows:  # none when the soak runs alone
            print(render(["path", "jobs", "messages", "per second", "at"], self.rows,
                         title=f"Throughput (check-ins or claims), {os.cpu_count()} cores, one worker prefork x2"))
            print(f"\nworker: {shown(command('checkins'))}")
        for note in self.notes:
            print(note)
        for failure in self.failures:
            print(f"FAILED {failure}")
        if self.rows:
            rate = lambda name: self.rates.get(name, 0.0)  # noqa: E731
            ratio = lambda a, b: rate(a) / rate(b) if rate(b) else 0.0  # noqa: E731
            print(f"ratios: per_job/noop={ratio('per_job', 'noop'):.2f} "
                  f"batched/per_job={ratio('batched', 'per_job'):.2f} "
                  f"per_action/per_job={ratio('per_action', 'per_job'):.2f} "
                  f"claims_batched/claims={ratio('claims_batched', 'claims'):.2f} "
                  f"batched/direct={ratio('batched', 'direct'):.2f} "
                  f"batched/sql_set_limit={ratio('batched', 'sql_set_limit'):.2f} "
                  f"direct/sql_limit={ratio('direct', 'sql_limit'):.2f}")


PATHS = ("noop", "per_job", "per_job_ff", "batched", "per_action", "per_action_ff", "claims", "claims_batched",
         "direct", "sql_limit", "sql_set_limit", "latency")


def main() -> int:
    # BENCH_PATHS=batched,direct runs only those (the ratios then lack the others).
    # BENCH_PATHS= (empty) with BENCH_SOAK runs the soak alone.
    chosen = [name.strip() for name in os.environ.get("BENCH_PATHS", ",".join(PATHS)).split(",") if name.strip()]
    unknown = sorted(set(chosen) - set(PATHS))
    if unknown:
        print(f"BENCH_PATHS: unknown path(s) {', '.join(unknown)}; choose from {', '.join(PATHS)}", file=sys.stderr)
        return 2
    bench = Bench(int(os.environ.get("BENCH_JOBS", "4000")), int(os.environ.get("BENCH_BATCH", "500")))
    runs = {"noop": bench.noop, "per_job": lambda: bench.per_job("per_job", ignore_result=False),
            "per_job_ff": lambda: bench.per_job("per_job_ff", ignore_result=True),
            "batched": bench.batched,
            "per_action": lambda: bench.per_action("per_action", ignore_result=False),
            "per_action_ff": lambda: bench.per_action("per_action_ff", ignore_result=True),
            "claims": lambda: bench.claims("claims", None),
            "claims_batched": lambda: bench.claims("claims_batched", bench.batch_size),
            "direct": bench.direct, "sql_limit": bench.sql_limit, "sql_set_limit": bench.sql_set_limit,
            "latency": bench.latency}
    try:
        for name in chosen:
            if name == "latency" and not {"per_job", "per_action", "claims"} & set(bench.rates):
                continue
            runs[name]()
        soak_count = int(os.environ.get("BENCH_SOAK", "0"))
        if soak_count:
            bench.soak(soak_count)
        bench.report()
    finally:
        bench.client.close()
        checks.reset()
    return 1 if bench.failures else 0


if __name__ == "__main__":
    sys.exit(main())
