"""`make chaos`: a seeded fault run on servers of its own, checked against the reference model.

    python -m chaos --broker redis --seed 1           # the full run (≥ 10,000 jobs)
    python -m chaos --broker amqp --profile short     # the CI seed (tests/system/test_chaos.py)
    python -m chaos --broker amqp --profile failover  # PostgreSQL under Patroni (`make failover`, chaos/ha.py)

Two worker processes (prefork ×2) consume every queue while the run sends
its day batches and, on a timeline of its own, SIGKILLs a pool child twice,
SIGKILLs a worker's main process once (and starts it again), stops
PostgreSQL, freezes it with SIGSTOP and restarts Redis; on RabbitMQ it also
closes every connection of the run's vhost, as a node restart does (the
shared node itself is not restarted: other suites use it). A worker that
exits on its own is counted in the table; the run expects none. At the end every
partner is compared with chaos.model and a table is printed; a failure
prints the seed and the timeline, and exits 1.

A fault counts only with evidence that it had an effect: a killed pool child
held a job (the worker's `inspect active` named it, and Celery logged the
WorkerLostError), a killed main process held jobs, PostgreSQL faults were
followed by logged retries, a broker or result store restart by logged lost
connections. A fault without evidence makes the run inconclusive (exit 1).
Jobs the broker lost are sent again by the producer under their ids and
reported on a line of their own; on RabbitMQ there must be none.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from chaos import ha, servers, traffic

REPO_ROOT = Path(__file__).resolve().parents[1]
QUEUES = ("checkins", "claims", "operator", "maintenance")


@dataclass(frozen=True)
class Profile:
    partners: int
    days: int
    pg_stop_s: float
    pg_freeze_s: float
    worker_env: dict
    # When each fault starts, in seconds after the first batch is sent.
    at_s: dict
    # PostgreSQL under Patroni on three machines, Redis under Sentinel and
    # RabbitMQ as a three-node cluster (chaos.ha) instead of one server each;
    # PostgreSQL replicated synchronously, or asynchronously to show what that loses.
    ha: bool = False
    synchronous: bool = True
    # Before the primary's machine is lost, it stops sending WAL to its standbys
    # for this long, as over a congested link: asynchronous replication keeps
    # acknowledging commits that only the primary holds; synchronous waits.
    replication_stall_s: float = 0


# Every check-in of a run must be inside the late window (days + 5 days ago
# at the oldest, delivered in any order): a window of days + 10 covers it.
PROFILES = {
    "full": Profile(450, 20, 120, 60, {"REWARDS_LATE_WINDOW_DAYS": "30"}, {
        "kill_child_1": 5, "redis_restart": 10, "rabbitmq_restart": 15, "pg_stop": 20, "kill_child_2": 150,
        "kill_main": 155, "pg_freeze": 170}),
    # Short limits so the CI run takes a minute and a half: 400 partners, so
    # jobs still flow when the last faults come (with 150 the traffic had
    # sometimes drained first, and those faults had no effect); a 10 s hard limit
    # (the freeze outlasts its 9 s soft limit), a 2 s backoff cap, and so a
    # derived visibility timeout of 24 s.
    "short": Profile(400, 10, 15, 12, {"REWARDS_LATE_WINDOW_DAYS": "20", "REWARDS_TASK_TIME_LIMIT_S": "10",
                                     "REWARDS_RETRY_BACKOFF_S_MAX": "2", "REWARDS_CONNECT_TIMEOUT_S": "2", "REWARDS_RELAY_BUDGET_S": "2",
                                     "REWARDS_WEBHOOK_TIMEOUT_S": "2", "REWARDS_STATEMENT_TIMEOUT_MS": "3000"}, {
        "kill_child_1": 2, "redis_restart": 5, "rabbitmq_restart": 9, "pg_stop": 12, "kill_child_2": 28,
        "kill_main": 29, "pg_freeze": 30}),
}
# `make failover`, while jobs flow: the PostgreSQL primary's machine lost,
# the Redis master lost, the RabbitMQ node leading the check-ins queue lost,
# a pool child and a whole worker (main process and pool) killed, the next
# PostgreSQL primary hung; each lost server comes back and rejoins. The
# short one is the CI seed.
PROFILES |= {
    "failover": Profile(450, 20, 0, 0, PROFILES["short"].worker_env, {
        "pg_primary_kill": 5, "redis_master_kill": 45, "rabbit_node_kill": 62, "kill_child": 85, "kill_main": 89,
        "pg_primary_hang": 100}, ha=True, replication_stall_s=2),
    "failover_async": Profile(450, 20, 0, 0, PROFILES["short"].worker_env, {"pg_primary_kill": 5},
                              ha=True, synchronous=False, replication_stall_s=2),
    "failover_short": Profile(400, 10, 0, 0, PROFILES["short"].worker_env,
                              {"pg_primary_kill": 3, "pg_primary_hang": 38, "rabbit_node_kill": 72}, ha=True),
}
# Jobs queued on the broker before a fault is injected (see Run._wait_for_queued_jobs).
MIN_BACKLOG = 50
# How long a lost or hung machine stays away before it comes back.
MACHINE_AWAY_S = 5
# Workers and the reader connect as production's clients do, through login
# roles in migration 0009's groups; the run itself migrates and checks as the owner.
WORKER_ROLE, READER_ROLE = "rewards_chaos_worker", "rewards_chaos_reader"


def _as_role(url: str, role: str) -> str:
    return make_url(url).set(username=role).render_as_string(hide_password=False)


class Timeline:
    def __init__(self) -> None:
        self.started = time.monotonic()
        self.lines: list[str] = []
        self.last_fault_end_s = 0.0

    def note(self, text: str, fault_end: bool = False) -> None:
        at_s = time.monotonic() - self.started
        if fault_end:
            self.last_fault_end_s = at_s
        self.lines.append(f"{at_s:8.1f} s  {text}")
        print(f"[chaos] {at_s:7.1f} s  {text}", flush=True)


class Worker:
    def __init__(self, name: str, env: dict, folder: Path):
        self.name, self.env, self.folder = name, env, folder
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0

    def start(self) -> None:
        self.started_at = time.monotonic()
        log = (self.folder / f"{self.name}.log").open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(QUEUES), "-c", "2",
             "-P", "prefork", "-n", f"{self.name}@%h", "--loglevel=WARNING"],
            cwd=REPO_ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def children(self) -> list[int]:
        out = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True).stdout
        return [int(pid) for pid in out.split()]

    def last_error(self) -> str:
        """The last line of its log that names an error, for the timeline."""
        lines = (self.folder / f"{self.name}.log").read_text(errors="replace").splitlines()
        errors = [line for line in lines if "Error" in line or "CRITICAL" in line]
        return (errors or lines or ["(empty log)"])[-1][:300]

    def log_count(self, marker: str) -> int:
        """How often `marker` appears in this worker's log (appended to across restarts, so it only grows)."""
        return (self.folder / f"{self.name}.log").read_text(errors="replace").count(marker)

    def connection_losses(self) -> int:
        """How often Celery logged losing its broker connection in this worker's log."""
        return self.log_count("Connection to broker lost")

    def kill_group(self, sig: int = signal.SIGKILL) -> None:
        try:
            os.killpg(self.process.pid, sig)
        except ProcessLookupError:
            pass
        self.process.wait(30)


class Run:
    def __init__(self, broker: str, seed: int, profile: Profile, folder: Path):
        self.broker, self.seed, self.profile, self.folder = broker, seed, profile, folder
        self.timeline = Timeline()
        self.pg = ha.PatroniCluster(folder, profile.synchronous) if profile.ha else servers.Postgres(folder)
        # Results and dead letters: behind Sentinel in the failover runs (a broker too otherwise).
        self.redis = ha.SentinelRedis(folder) if profile.ha else servers.Redis(folder)
        # On RabbitMQ, a vhost of the run's own: on a three-node cluster in the failover runs.
        vhost = f"rewards_chaos_{os.getpid()}"
        self.vhost = None
        if broker == "amqp":
            self.vhost = ha.RabbitCluster(folder, vhost) if profile.ha else servers.RabbitVhost(vhost)
        self.workers: list[Worker] = []
        self.kill_to_redelivery_s: float | None = None
        self.in_flight: list[str] = []
        # Per fault: seconds until every job sent before it was answered (see _time_to_answer).
        self.drained_s: dict[str, float] = {}
        self.traffic_done = False
        self.faults_during_traffic = 0
        # Per fault: what shows it had an effect, or None (the run is then inconclusive).
        self.evidence: dict[str, str | None] = {}
        # Per kill: the job ids the killed process held; each must run again without a re-send.
        self.held: dict[str, list[str]] = {}
        # Per fault: each log marker's count when it started (see logged_evidence).
        self.marks_before: dict[str, Counter] = {}
        self.control = None
        self.observer = None
        # Jobs the broker lost, sent again by the producer; their results say
        # whether the first message had run (duplicate) or not (applied).
        self.resent: list[str] = []
        # A worker that exits on its own is started again, as compose's
        # `restart: unless-stopped` does; the lock keeps the supervisor off a
        # worker a fault is killing and starting itself.
        self.workers_lock = threading.Lock()
        self.stopping = threading.Event()
        self.unplanned_exits: list[str] = []
        # HA runs: when each primary was lost and when its successor was promoted (monotonic s), and
        # the read side meanwhile: when each read through the read URL answered (and whether a
        # standby did), and each one that failed.
        self.switches: list[tuple[float, float]] = []
        self.lead_taken_back: list[str] = []
        self.reads: list[tuple[float, bool]] = []
        self.read_failures: list[str] = []

    # ---- servers and workers -------------------------------------------------
    def env(self) -> dict:
        broker_url = self.vhost.url if self.vhost else self.redis.url(0)
        # Settings come from the profile alone: a caller's REWARDS_* or
        # CELERY_* (a test suite's one-second retry horizon) must not leak in.
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("REWARDS_", "CELERY_"))}
        return inherited | self.profile.worker_env | {
            "REWARDS_DATABASE_URL": self.pg.url, "REWARDS_READ_DATABASE_URL": self.pg.read_url,
            "CELERY_BROKER_URL": broker_url, "CELERY_RESULT_BACKEND": self.redis.url(1),
            "REWARDS_DEAD_LETTER_URL": self.redis.url(2), "REWARDS_REDIS_SENTINEL_MASTER": ha.SentinelRedis.MASTER_NAME,
        }

    def start(self) -> None:
        self.pg.init()
        self.redis.start()
        if self.vhost:
            self.vhost.create()
            self._declare_queues()
        for name in [k for k in os.environ if k.startswith(("REWARDS_", "CELERY_"))]:
            del os.environ[name]
        os.environ.update({k: v for k, v in self.env().items() if k.startswith(("REWARDS_", "CELERY_"))})
        from sqlalchemy import text

        from rewards import db

        db.upgrade()
        with self.owner().begin() as conn:
            conn.execute(text(f"CREATE ROLE {WORKER_ROLE} LOGIN IN ROLE rewards_worker"))
            conn.execute(text(f"CREATE ROLE {READER_ROLE} LOGIN IN ROLE rewards_reader"))
        worker_env = self.env() | {"REWARDS_DATABASE_URL": _as_role(self.pg.url, WORKER_ROLE),
                                   "REWARDS_READ_DATABASE_URL": _as_role(self.pg.read_url, READER_ROLE)}
        self.workers = [Worker(name, worker_env, self.folder) for name in ("chaos-a", "chaos-b")]
        for worker in self.workers:
            worker.start()

    def _declare_queues(self) -> None:
        """The job queues exist before a job is sent, as production's definitions make them
        (`rewards access rabbitmq`): RabbitMQ drops, and confirms, a message published to an
        exchange whose queue a starting worker has not bound yet. Traffic sent at once after
        the workers started lost a few jobs that way, one run in three."""
        from kombu import Connection

        from rewards import contract

        with Connection(self.env()["CELERY_BROKER_URL"]) as connection:
            for queue in contract.kombu_queues():
                queue(connection.default_channel).declare()

    def cleanup(self) -> None:
        self.stopping.set()
        with self.workers_lock:
            for worker in self.workers:
                if worker.process and worker.process.poll() is None:
                    worker.kill_group(signal.SIGTERM)
        if self.control is not None:
            self.control.close()
        self.pg.cleanup()
        self.redis.cleanup()
        if self.vhost:
            self.vhost.cleanup()

    # ---- faults ----------------------------------------------------------------
    def fault_plan(self) -> dict[str, float]:
        """The profile's faults that apply to this run's broker (a RabbitMQ fault needs RabbitMQ)."""
        return {name: at_s for name, at_s in self.profile.at_s.items()
                if name not in ("rabbitmq_restart", "rabbit_node_kill") or self.vhost is not None}

    def faults(self, stop: threading.Event) -> None:
        steps = sorted(self.fault_plan().items(), key=lambda item: item[1])
        for name, at_s in steps:
            if stop.wait(max(0.0, at_s - (time.monotonic() - self.timeline.started))):
                return
            if self._wait_for_queued_jobs(stop):
                return
            self.faults_during_traffic += not self.traffic_done
            self.marks_before[name] = self._log_counts(self.ALL_MARKERS)
            threading.Thread(target=self._time_to_answer, args=(name, list(self.in_flight)), daemon=True).start()
            try:
                self.evidence[name] = getattr(self, "_" + name.rstrip("_12"))(name)
            except Exception as error:  # noqa: BLE001 - the run goes on, and shows what it can
                self.evidence[name] = None
                self.timeline.note(f"fault {name} failed: {type(error).__name__}: {error}", fault_end=True)

    def _wait_for_queued_jobs(self, stop: threading.Event, limit_s: float = 15) -> bool:
        """Hold a fault back until a backlog is queued on the broker (bounded): one that came between two
        batches, or while the workers kept up with the producer, could pass with no job touching what
        it broke, and show no effect. True if the run is stopping."""
        deadline = time.monotonic() + limit_s
        while not self.traffic_done and self.queued() < MIN_BACKLOG and time.monotonic() < deadline:
            if stop.wait(0.1):
                return True
        return False

    def _time_to_answer(self, name: str, job_ids: list[str]) -> None:
        """Seconds from the fault's start until every job sent before it has its SUCCESS result: drained."""
        started = time.monotonic()
        while not self.stopping.is_set():
            results = self.results(job_ids)
            if all(results.get(job_id, {}).get("status") == "SUCCESS" for job_id in job_ids):
                self.drained_s[name] = time.monotonic() - started
                return
            time.sleep(0.5)

    # Log lines that show a fault had an effect, by fault (any worker's log).
    EFFECTS = {
        "pg_stop": ("event=job.retry", "event=job.requeued"),
        "pg_freeze": ("event=job.retry", "event=job.requeued", "event=job.time_limit_requeued",
                      "Soft time limit", "Hard time limit"),
        "pg_primary_kill": ("event=job.retry", "event=job.requeued"),
        "redis_master_kill": ("Connection to Redis lost", "Failed operation", "event=job.result_unstored",
                              "Connection to broker lost", "event=job.retry"),
        "pg_primary_hang": ("event=job.retry", "event=job.requeued", "event=job.time_limit_requeued",
                            "Soft time limit", "Hard time limit"),
        "redis_restart": ("Connection to broker lost", "Connection to Redis lost", "Failed operation",
                          "event=job.retry", "event=job.result_unstored"),
        "rabbit_node_kill": ("Connection to broker lost",),
    }
    ALL_MARKERS = tuple(sorted({marker for markers in EFFECTS.values() for marker in markers}))

    def _log_counts(self, markers: tuple[str, ...]) -> Counter:
        return Counter({marker: sum(worker.log_count(marker) for worker in self.workers) for marker in markers})

    def logged_evidence(self) -> None:
        """Evidence from the logs, for the faults that leave it there: the marker lines logged from the
        fault's start to the next fault's start (or the run's end); retries and reconnections follow a
        fault within that window, and counting afterwards keeps the fault timeline on time."""
        names = sorted(self.marks_before, key=self.fault_plan().get)
        for name, following in zip(names, [*names[1:], None]):
            markers = self.EFFECTS.get(name.rstrip("_12"))
            if markers is None:
                continue
            after = self.marks_before[following] if following else self._log_counts(self.ALL_MARKERS)
            grown = Counter({m: after[m] - self.marks_before[name][m] for m in markers}) + Counter()
            logged = ", ".join(f"{marker!r} x{count}" for marker, count in grown.items())
            # What the fault saw itself (a promotion) counts only if the workers felt it too.
            self.evidence[name] = "; ".join(filter(None, (self.evidence[name], logged))) if logged else None

    def _jobs_of(self, worker: Worker, *kinds: str) -> dict[int | None, list[str]]:
        """Pool child pid -> job ids, as the worker's main process reports them (Celery's remote control).

        kinds: "active" (running in a child) and/or "reserved" (prefetched, no child yet: pid None).
        """
        if self.control is None:
            from rewards.client import RewardsClient

            self.control = RewardsClient()
        # One node, and return on its reply: a stale answer names jobs long finished.
        inspect = self.control.app.control.inspect([f"{worker.name}@{socket.gethostname()}"], timeout=2, limit=1)
        jobs: dict[int | None, list[str]] = {}
        for kind in kinds:
            try:
                replies = getattr(inspect, kind)() or {}
            except Exception:  # noqa: BLE001 - the broker may be the fault of the moment
                replies = {}
            for node, requests in replies.items():
                if node.split("@")[0] == worker.name:
                    for request in requests:
                        jobs.setdefault(request.get("worker_pid"), []).append(request["id"])
        return jobs

    def _kill_child(self, name: str) -> str | None:
        """SIGKILL a pool child running a job; the evidence is the job and Celery's WorkerLostError for it.

        Jobs take milliseconds: a child named running one may have finished it
        by the time the signal lands. Celery logs WorkerLostError only for a
        child that died holding a job, so a kill without it is tried again, up
        to 20 kills. Between batches, or while jobs wait out a retry's
        countdown after a server fault, no child runs anything: it waits (up
        to 30 s, while traffic flows) for one that does.
        """
        attempt, deadline = 0, time.monotonic() + 30
        while attempt < 20 and time.monotonic() < deadline and not self.traffic_done:
            worker = self._working_worker()
            running = {pid: ids for pid, ids in self._jobs_of(worker, "active").items()
                       if pid in worker.children()}
            if not running:
                time.sleep(0.2)
                continue
            attempt += 1
            pid, ids = next(iter(running.items()))
            lost_before = worker.log_count("WorkerLostError")
            os.kill(pid, signal.SIGKILL)
            self.timeline.note(f"SIGKILL pool child {pid} of {worker.name}, running {', '.join(ids)}",
                               fault_end=True)
            if self._child_lost_job(worker, lost_before):
                self.held[name] = ids
                return f"child {pid} of {worker.name} held {', '.join(ids)}; WorkerLostError logged"
            self.timeline.note(f"{name}: child {pid} had finished its job (no WorkerLostError); "
                               f"killing another (attempt {attempt})")
        return None

    def _child_lost_job(self, worker: Worker, lost_before: int) -> bool:
        # The main process logs it as soon as it reaps the child.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if worker.log_count("WorkerLostError") > lost_before:
                return True
            time.sleep(0.2)
        return False

    def _working_worker(self) -> Worker:
        """A worker whose pool has applied one of the jobs in flight since it last started.

        Killing a pool child while its worker is still starting makes Celery
        give up ("Could not start worker processes"): that is a start-up
        failure, not the fault this run is about.
        """
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            # A result names the worker that ran it (celeryconfig's result_extended).
            applied_by = {meta.get("worker", "").split("@")[0] for meta in self.results(list(self.in_flight)).values()}
            working = [worker for worker in self.workers
                       if worker.name in applied_by and time.monotonic() - worker.started_at > 5]
            if working:
                return random.Random(self.seed + len(self.timeline.lines)).choice(working)
            time.sleep(0.2)
        raise RuntimeError("no worker applied a job in flight for 60 s: nothing to kill a pool child of")

    def _kill_main(self, name: str) -> str | None:
        worker = self.workers[0]
        pending = self._unfinished()
        deadline = time.monotonic() + 120
        while len(pending) < 20 and time.monotonic() < deadline and not self.traffic_done:
            time.sleep(0.1)  # kill it while it holds work, not between two batches
            pending = self._unfinished()
        # What the main process holds, running and prefetched: each must run again, not be re-sent.
        # A worker between two prefetches holds nothing: wait (bounded) for one that does.
        held = self._held_by(worker)
        deadline = time.monotonic() + 15
        while not held and time.monotonic() < deadline and not self.traffic_done:
            time.sleep(0.2)
            held = self._held_by(worker)
        applied_before = self.applied_count()
        with self.workers_lock:
            os.kill(worker.process.pid, signal.SIGKILL)
            killed_at = time.monotonic()
            self.timeline.note(f"SIGKILL main process {worker.process.pid} of {worker.name} "
                               f"({applied_before} check-ins applied so far, {len(pending)} jobs unfinished)")
            worker.kill_group()  # its orphaned pool children go with it, as in a container kill
            worker.start()
        self.timeline.note(f"{worker.name} started again (pid {worker.process.pid})", fault_end=True)
        threading.Thread(target=self._measure_redelivery, args=(killed_at, pending), daemon=True).start()
        if not held:
            return None
        self.held[name] = held
        return f"main process of {worker.name} held {len(held)} jobs ({', '.join(held[:3])}...)"

    def _held_by(self, worker: Worker) -> list[str]:
        return [job_id for ids in self._jobs_of(worker, "active", "reserved").values() for job_id in ids]

    def supervise(self) -> None:
        """Start again a worker that exited on its own, noting why; stop the run if one keeps dying."""
        while not self.stopping.wait(0.5):
            with self.workers_lock:
                if self.stopping.is_set():
                    return
                for worker in self.workers:
                    code = worker.process.poll()
                    if code is None:
                        continue
                    self.unplanned_exits.append(worker.name)
                    self.timeline.note(f"{worker.name} exited on its own (code {code}): {worker.last_error()}")
                    if self.unplanned_exits.count(worker.name) > 3:
                        self.timeline.note(f"{worker.name} exited 4 times: stopping the run")
                        os.kill(os.getpid(), signal.SIGINT)
                        return
                    worker.start()
                    self.timeline.note(f"{worker.name} started again, as its restart policy would")

    def _unfinished(self) -> list[str]:
        in_flight = list(self.in_flight)
        results = self.results(in_flight)
        return [job_id for job_id in in_flight if results.get(job_id, {}).get("status") != "SUCCESS"]

    def _measure_redelivery(self, killed_at: float, pending: list[str]) -> None:
        """Seconds from the kill until every job unfinished at that moment has a SUCCESS result.

        The killed worker's prefetched and running jobs are among them; they
        are the last to finish, once the broker hands them out again.
        """
        while time.monotonic() - killed_at < 1_800:
            results = self.results(pending)
            if pending and all(results.get(job_id, {}).get("status") == "SUCCESS" for job_id in pending):
                self.kill_to_redelivery_s = time.monotonic() - killed_at
                self.timeline.note(f"every job unfinished at the SIGKILL is applied: "
                                   f"{self.kill_to_redelivery_s:.1f} s after it")
                return
            time.sleep(0.5)

    def _pg_stop(self, name: str) -> str | None:
        self.pg.stop()
        self.timeline.note(f"PostgreSQL stopped for {self.profile.pg_stop_s:g} s")
        time.sleep(self.profile.pg_stop_s)
        self.pg.start()
        self.timeline.note("PostgreSQL started again", fault_end=True)
        return None  # logged_evidence

    def _pg_freeze(self, name: str) -> str | None:
        self.pg.signal_all(signal.SIGSTOP)
        self.timeline.note(f"PostgreSQL frozen (SIGSTOP) for {self.profile.pg_freeze_s:g} s")
        time.sleep(self.profile.pg_freeze_s)
        self.pg.signal_all(signal.SIGCONT)
        self.timeline.note("PostgreSQL resumed (SIGCONT)", fault_end=True)
        return None  # logged_evidence

    def _pg_primary_kill(self, name: str) -> str | None:
        """The primary's machine lost: its etcd member, Patroni and PostgreSQL SIGKILLed at once."""
        return self._lose_primary("lost (SIGKILL of its etcd, Patroni and PostgreSQL)", signal.SIGKILL,
                                  stall_s=self.profile.replication_stall_s)

    def _pg_primary_hang(self, name: str) -> str | None:
        """The primary's machine hung: every process stopped (SIGSTOP), no connection closed."""
        return self._lose_primary("hung (SIGSTOP of its etcd, Patroni and PostgreSQL)", signal.SIGSTOP)

    def _lose_primary(self, what: str, sig: int, stall_s: float = 0) -> str:
        old = self.pg.primary()
        if old is None:
            raise RuntimeError("no PostgreSQL primary to lose: " + self.pg.logs())
        layout = self.pg.layout()
        if stall_s:
            senders = old.wal_senders()
            servers.signal_pids(senders, signal.SIGSTOP)  # they die with the machine
            self.timeline.note(f"{old.name} stops sending WAL ({len(senders)} WAL senders stopped) for {stall_s:g} s")
            time.sleep(stall_s)
        old.signal_all(sig)
        lost_at = time.monotonic()
        self.timeline.note(f"PostgreSQL primary {old.name} {what}; the cluster was: {layout}")
        new = self.pg.wait_for_primary_other_than(old, timeout_s=60)
        self.switches.append((lost_at, time.monotonic()))
        promoted_s = time.monotonic() - lost_at
        self.timeline.note(f"{new.name} promoted by Patroni, {promoted_s:.1f} s after: {self.pg.layout()}")
        flowing_s = self._work_flows_again(lost_at)
        time.sleep(max(0.0, MACHINE_AWAY_S - (time.monotonic() - lost_at)))
        if sig == signal.SIGSTOP:
            old.signal_all(signal.SIGCONT)
        else:
            self.pg.restart(old)
        # Asked through the promoted machine: the one that comes back answers from its old view at first.
        rejoined_s = self.pg.wait_until_healthy(timeout_s=120, via=new)
        leader = self.pg.leader(via=new)
        self.timeline.note(f"{old.name} back, {rejoined_s:.1f} s after it returned: {self.pg.layout(via=new)}",
                           fault_end=True)
        if leader != new.name:
            # The promoted standby's commits since its promotion are rewound away with it.
            self.lead_taken_back.append(f"{old.name} came back and {leader or 'no machine'} leads, "
                                        f"not {new.name}, which was promoted in its absence")
            self.timeline.note(self.lead_taken_back[-1])
        return (f"{new.name} took over from {old.name} after {promoted_s:.1f} s; "
                f"check-ins applied again after {flowing_s:.1f} s")

    def _work_flows_again(self, since: float) -> float:
        """Seconds from `since` until a check-in commits again (counted once the database answers)."""
        applied = -1
        while applied < 0:
            applied = self.applied_count()
            time.sleep(0.2)
        while self.applied_count() <= applied:
            if time.monotonic() - since > 120:
                raise RuntimeError("no check-in was applied within 120 s of losing the primary")
            time.sleep(0.2)
        flowing_s = time.monotonic() - since
        self.timeline.note(f"check-ins applied again, {flowing_s:.1f} s after the loss")
        return flowing_s

    def _redis_master_kill(self, name: str) -> str | None:
        """The Redis master's machine lost (SIGKILL); Sentinel promotes a replica; the old master comes back."""
        old = self.redis.master_port()
        self.redis.kill(old)
        lost_at = time.monotonic()
        self.timeline.note(f"Redis master :{old} lost (SIGKILL)")
        new = self.redis.wait_for_master_other_than(old, timeout_s=60)
        promoted_s = time.monotonic() - lost_at
        self.timeline.note(f"Sentinel promoted :{new}, {promoted_s:.1f} s after")
        time.sleep(MACHINE_AWAY_S)
        self.redis.restart(old)
        self.redis.wait_until_replicated(new, timeout_s=60)
        self.timeline.note(f"Redis :{old} back as a replica of :{new}", fault_end=True)
        return f"Sentinel promoted :{new} after {promoted_s:.1f} s"

    def _redis_restart(self, name: str) -> str | None:
        self.redis.stop()
        self.timeline.note("Redis stopped (append-only file on)")
        time.sleep(3)
        self.redis.start()
        self.timeline.note("Redis started again", fault_end=True)
        return None  # logged_evidence

    def _rabbit_node_kill(self, name: str) -> str | None:
        """The machine of the RabbitMQ node that leads the check-ins queue lost (SIGKILL of the node).

        Every client is connected to that node (the first of the failover
        URL, through which the queues were declared): the workers and the
        producer reconnect to the next node, which the quorum queues elect
        to lead them; the lost node comes back and rejoins.
        """
        lost = self.vhost.node(self.vhost.queue_leaders()[QUEUES[0]])
        losses_before = {worker.name: worker.connection_losses() for worker in self.workers}
        self.vhost.kill(lost)
        lost_at = time.monotonic()
        self.timeline.note(f"RabbitMQ node {lost.name} lost (SIGKILL), leader of {QUEUES[0]}")
        leader = self.vhost.wait_for_leader_other_than(QUEUES[0], lost, timeout_s=60)
        led_s = time.monotonic() - lost_at
        self.timeline.note(f"{leader} leads {QUEUES[0]}, {led_s:.1f} s after")
        flowing_s = self._work_flows_again(lost_at)
        time.sleep(max(0.0, MACHINE_AWAY_S - (time.monotonic() - lost_at)))
        self.vhost.start(lost)
        self.vhost.wait_until_running(lost, timeout_s=120)
        self.timeline.note(f"{lost.name} back in the cluster", fault_end=True)
        moved = [w.name for w in self.workers if w.connection_losses() > losses_before[w.name]]
        return (f"{leader} took the lead of {QUEUES[0]} after {led_s:.1f} s; check-ins applied again after "
                f"{flowing_s:.1f} s; workers that reconnected to another node: {', '.join(moved) or 'none'}")

    def _rabbitmq_restart(self, name: str) -> str | None:
        """Every connection of the run's vhost closed by the node, as when it restarts.

        Each worker must notice, reconnect and consume again in the same
        process; its log's "Connection to broker lost" is the evidence.
        """
        losses_before = {worker.name: worker.connection_losses() for worker in self.workers}
        self.vhost.close_connections("chaos: broker restart")
        self.timeline.note("RabbitMQ closed every connection of the run's vhost")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            noticed = [w.name for w in self.workers if w.connection_losses() > losses_before[w.name]]
            if len(noticed) == len(self.workers):
                break
            time.sleep(0.5)
        self.timeline.note(f"workers that lost their broker connection and kept running: "
                           f"{', '.join(noticed) or 'none'}", fault_end=True)
        return f"'Connection to broker lost' logged by {', '.join(noticed)}" if noticed else None

    def probe_reads(self) -> None:
        """Read a partner through the read URL (prefer-standby) every 0.2 s, as an app's read path does.

        Its pooled connection opens on the synchronous standby, the machine
        the first failover promotes and the next fault then hangs: reads keep
        answering only if the engine moves them off a standby once it is promoted.
        """
        from rewards import db, queries

        first = self.pg.sync_standby()
        url = self.pg.read_url_from(first) if first else self.pg.read_url
        engine = db.make_engine(_as_role(url, READER_ROLE), read_only=True, statement_timeout_ms=3_000,
                                connect_timeout_s=2)
        while not self.stopping.wait(0.2):
            try:
                with engine.connect() as conn:
                    fresh = queries.freshness(conn)
                    try:
                        queries.profile(conn, 1)
                    except queries.UnknownPartner:
                        pass  # answered: the partner's first job has not run yet
                self.reads.append((time.monotonic(), fresh.from_standby))
            except Exception as error:  # noqa: BLE001 - the server read from may be the fault of the moment
                self.read_failures.append(type(error).__name__)

    def read_figures(self) -> str:
        """Reads answered (from a standby) and failed, and the reads answered while each primary was away."""
        during = [sum(lost_at <= at <= promoted_at for at, _ in self.reads) for lost_at, promoted_at in self.switches]
        standby = sum(from_standby for _, from_standby in self.reads)
        return (f"{len(self.reads):,} answered ({standby:,} by a standby), {len(self.read_failures)} failed; "
                f"answered while the primary was away: {', '.join(map(str, during)) or '-'}")

    # ---- observing ---------------------------------------------------------------
    def _redis(self, db: int):
        from rewards import redis_client

        return redis_client.connect(self.redis.url(db), timeout_s=5)

    def unacknowledged(self) -> int:
        if self.vhost:
            return 0  # RabbitMQ counts unacknowledged messages in queued()
        try:
            return self._redis(0).hlen("unacked")
        except Exception:  # noqa: BLE001 - Redis may be the fault of the moment
            return -1

    def queued(self) -> int:
        try:
            if self.vhost:
                return self.vhost.queued_messages(QUEUES)
            return sum(self._redis(0).llen(queue) for queue in QUEUES)
        except Exception:  # noqa: BLE001
            return -1

    def owner(self):
        """The run's own engine, as the database owner, with a new connection each time: a pooled one
        to a primary since lost or hung would fail, or wait for it for ever (its kernel still acknowledges)."""
        from sqlalchemy import create_engine, pool

        from rewards import db

        if self.observer is None:
            self.observer = create_engine(self.pg.url, poolclass=pool.NullPool, connect_args=db.postgres_connect_args(
                statement_timeout_ms=3_000, lock_timeout_ms=1_000, connect_timeout_s=2))
        return self.observer

    def applied_count(self) -> int:
        from sqlalchemy import text

        try:
            with self.owner().connect() as conn:
                return conn.execute(text("SELECT COUNT(*) FROM checkin")).scalar_one()
        except Exception:  # noqa: BLE001 - PostgreSQL may be the fault of the moment
            return -1

    def results(self, job_ids: list[str]) -> dict[str, dict]:
        try:
            raw = self._redis(1).mget([f"celery-task-meta-{job_id}" for job_id in job_ids])
        except Exception:  # noqa: BLE001
            return {}
        return {job_id: json.loads(value) for job_id, value in zip(job_ids, raw) if value}

    # ---- traffic -----------------------------------------------------------------
    def send_all(self, batches: list[list[traffic.Job]], drain_timeout_s: float) -> list[tuple[traffic.Job, str]]:
        from rewards.client import RewardsClient

        client = RewardsClient()
        rng = random.Random(self.seed)
        sent: list[tuple[traffic.Job, str]] = []
        try:
            for number, batch in enumerate(batches):
                self.in_flight = []
                ids = []
                for job in traffic.deliveries(batch, rng):
                    ids.append((job, self._send(client, job)))
                    self.in_flight.append(ids[-1][1])
                sent += ids
                self._drain(client, ids, drain_timeout_s, f"batch {number}")
        finally:
            self.traffic_done = True
            client.close()
        return sent

    def _send(self, client, job: traffic.Job, job_id: str | None = None) -> str:
        # The producer's side of the contract: a send the broker did not take is sent again.
        for _ in range(120):
            try:
                return client.send(job.name, job_id=job_id, **job.kwargs).id
            except Exception:  # noqa: BLE001 - the broker may be the fault of the moment
                time.sleep(0.5)
        raise RuntimeError(f"the broker took no message for a minute: {job}")

    def _drain(self, client, sent: list[tuple[traffic.Job, str]], timeout_s: float, what: str) -> None:
        """Wait for every job's SUCCESS result; send again, once, what the broker lost (see RewardsClient.send)."""
        deadline = time.monotonic() + timeout_s
        idle_since = None
        sent_again = False
        job_ids = [job_id for _, job_id in sent]
        while time.monotonic() < deadline:
            results = self.results(job_ids)
            missing = [(job, job_id) for job, job_id in sent if results.get(job_id, {}).get("status") != "SUCCESS"]
            if not missing:
                return
            broker_empty = self.queued() == 0 and self.unacknowledged() == 0
            idle_since = (idle_since or time.monotonic()) if broker_empty else None
            if idle_since and time.monotonic() - idle_since > 30:
                if sent_again:
                    self.timeline.note(f"{what}: {len(missing)} jobs without a SUCCESS result and nothing "
                                       "left on the broker, after sending them again")
                    return
                self._send_again(client, missing, what)
                sent_again, idle_since = True, None
            time.sleep(0.5)
        self.timeline.note(f"{what}: gave up waiting after {timeout_s:g} s")

    def _send_again(self, client, missing: list[tuple[traffic.Job, str]], what: str) -> None:
        self.resent += [job_id for _, job_id in missing]
        for job, job_id in missing:
            self._send(client, job, job_id)
        self.timeline.note(f"{what}: {len(missing)} jobs without a SUCCESS result and nothing left on the "
                           f"broker: sent again under their ids ({', '.join(job_id for _, job_id in missing[:5])})")

    def wait_for_faults_and_drain(self, fault_thread: threading.Thread, job_ids: list[str],
                                  timeout_s: float) -> float:
        """Seconds from the end of the last fault until every job has its result and the broker is empty."""
        fault_thread.join()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            results = self.results(job_ids)
            if (len(results) == len(job_ids) and self.queued() == 0 and self.unacknowledged() == 0
                    and all(r["status"] in ("SUCCESS", "FAILURE") for r in results.values())):
                break
            time.sleep(0.5)
        return max(0.0, time.monotonic() - self.timeline.started - self.timeline.last_fault_end_s)


def resent_figures(run: Run, figures) -> str:
    """How the jobs sent again came out: applied (the broker lost the message before it ran) or duplicate."""
    results = run.results(run.resent)
    statuses = Counter(r["result"]["status"] for r in results.values() if r["status"] == "SUCCESS")
    required = " (applied must be 0 on RabbitMQ)" if run.vhost and run.resent else ""
    return f"{len(run.resent)}: {statuses['applied']} / {statuses['duplicate']}{required}"


def first_runs_lost(run: Run) -> list[str]:
    """Jobs sent again that came back `applied`: their first message never ran, so the broker lost it.

    One that comes back `duplicate` ran the first time and lost only its
    result (a Redis failover can lose what its master had not replicated).
    """
    results = run.results(run.resent)
    return [job_id for job_id in run.resent
            if results.get(job_id, {}).get("result", {}).get("status") == "applied"]


def unanswered_held(run: Run, name: str) -> list[str]:
    """Jobs a killed process held that have no result of their own: lost, or answered only by a re-send."""
    results = run.results(run.held.get(name, []))
    return [job_id for job_id in run.held.get(name, [])
            if results.get(job_id, {}).get("status") != "SUCCESS" or job_id in run.resent]


def fault_rows(run: Run) -> list[tuple[str, str]]:
    """Each fault and its evidence; a kill also says whether every job it held ran without a re-send."""
    rows = []
    for name in sorted(run.fault_plan(), key=run.fault_plan().get):
        evidence = run.evidence.get(name) or "NO EVIDENCE: inconclusive"
        if name in run.held:
            held, unanswered = run.held[name], unanswered_held(run, name)
            evidence += f"; held jobs with their result, none re-sent: {len(held) - len(unanswered)} of {len(held)}"
        drained_s = run.drained_s.get(name)
        evidence += ("; jobs sent before it: some never answered" if drained_s is None
                     else f"; jobs sent before it all answered after {drained_s:.1f} s")
        rows.append((f"fault {name}", evidence))
    return rows


def faults_with_evidence(run: Run) -> int:
    return sum(bool(run.evidence.get(name)) and not unanswered_held(run, name) for name in run.fault_plan())


def report(run: Run, figures, drained_s: float, took_s: float) -> str:
    rejected = ", ".join(f"{reason} {count:,}" for reason, count in sorted(figures.rejected.items())) or "0"
    rows = [
        ("broker / seed / profile", f"{run.broker} / {run.seed} / {run.profile_name}"),
        ("jobs sent (unique)", f"{figures.sent:,} ({figures.unique:,})"),
        ("applied", f"{figures.statuses['applied']:,}"),
        ("duplicates", f"{figures.statuses['duplicate']:,}"),
        ("rejected (by reason)", f"{figures.statuses['rejected']:,}: {rejected}"),
        ("lost", figures.lost),
        ("double-credited", figures.double_credited),
        ("wrongly rejected", figures.wrongly_rejected),
        ("wrongly applied", figures.wrongly_applied),
        ("falsely failed", figures.falsely_failed),
        ("stuck", figures.stuck),
        ("lost by the broker, recovered by the producer (re-sent): applied / duplicate",
         resent_figures(run, figures)),
        ("partners differing from the model", figures.partners_differing),
        ("invariants held", "all" if not figures.invariants_broken else "BROKEN: " + "; ".join(figures.invariants_broken)),
        ("workers that exited on their own (restarted)",
         f"{len(run.unplanned_exits)}" + (f": {', '.join(run.unplanned_exits)}" if run.unplanned_exits else "")),
        ("SIGKILL of a worker to its jobs applied (s)",
         "-" if run.kill_to_redelivery_s is None else f"{run.kill_to_redelivery_s:.1f}"),
        ("last fault to fully drained (s)", f"{drained_s:.1f}"),
        *([("reads through the read URL", run.read_figures())] if run.profile.ha else []),
        ("faults injected while jobs flowed", f"{run.faults_during_traffic} of {len(run.fault_plan())}"),
        ("faults with evidence of an effect", f"{faults_with_evidence(run)} of {len(run.fault_plan())}"),
        *fault_rows(run),
        ("whole run (s)", f"{took_s:.0f}"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--broker", choices=("redis", "amqp"), default="redis")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]
    with tempfile.TemporaryDirectory(prefix="rewards-chaos-") as folder:
        run = Run(args.broker, args.seed, profile, Path(folder))
        run.profile_name = args.profile
        try:
            return _execute(run, profile)
        except BaseException:
            _print_timeline(run)
            raise
        finally:
            run.cleanup()


def _execute(run: Run, profile: Profile) -> int:
    from sqlalchemy import text

    from chaos.check import compare
    from rewards import db, deadletters

    batches = traffic.plan(run.seed, profile.partners, profile.days)
    run.start()
    run.timeline = Timeline()
    run.timeline.note(f"{sum(map(len, batches)):,} unique jobs in {len(batches)} batches; workers started")
    stop = threading.Event()
    fault_thread = threading.Thread(target=run.faults, args=(stop,), daemon=True)
    fault_thread.start()
    threading.Thread(target=run.supervise, daemon=True).start()
    if profile.ha:
        threading.Thread(target=run.probe_reads, daemon=True).start()
    drain_timeout_s = 900 if profile is PROFILES["full"] else 300
    sent = run.send_all(batches, drain_timeout_s)
    run.timeline.note("every batch sent and drained")
    drained_s = run.wait_for_faults_and_drain(fault_thread, [job_id for _, job_id in sent], drain_timeout_s)
    run.timeline.note("broker empty after the last fault")
    run.logged_evidence()
    results = run.results([job_id for _, job_id in sent])
    leftover = run.queued() + run.unacknowledged()
    with db.get_engine().connect() as conn:
        failure_rows = conn.execute(text("SELECT COUNT(*) FROM job_failure")).scalar_one()
        dead = len(deadletters.pending(run.redis.url(2)))
        figures = compare(conn, batches, sent, results, leftover, failure_rows, dead)
    took_s = time.monotonic() - run.timeline.started
    print("\n" + report(run, figures, drained_s, took_s))
    if run.lead_taken_back:
        print("\nfailover run FAILED: " + "; ".join(run.lead_taken_back))
        _print_timeline(run)
        return 1
    if not profile.synchronous:
        # The figures are the point: what a failover loses when a commit need not reach a standby.
        print(f"\nasynchronous replication: {figures.lost} acknowledged jobs lost and {figures.wrongly_rejected} "
              f"rejected for want of them; {figures.partners_differing} partners differ from the model "
              "(the synchronous run loses none)")
        if faults_with_evidence(run) == len(run.fault_plan()):
            return 0
    if figures.ok() and run.unplanned_exits:
        print(f"\nchaos run FAILED: workers exited on their own ({', '.join(run.unplanned_exits)}); "
              "a worker must survive every fault in its own process")
        _print_timeline(run)
        return 1
    broker_lost = first_runs_lost(run)
    if figures.ok() and run.vhost and broker_lost:
        print(f"\nchaos run FAILED: RabbitMQ lost {len(broker_lost)} jobs, which the producer sent again "
              f"({', '.join(broker_lost[:5])}); acknowledgements must leave no such gap")
        _print_trail(run, broker_lost[:5])
        _print_timeline(run)
        return 1
    planned = len(run.fault_plan())
    if figures.ok() and run.faults_during_traffic == planned and faults_with_evidence(run) == planned:
        return 0
    if figures.ok():
        print(f"\nchaos run INCONCLUSIVE: {run.faults_during_traffic} of {planned} faults came while jobs "
              f"flowed, {faults_with_evidence(run)} of {planned} showed evidence of an effect "
              "(a fault without it proves nothing)")
        _print_timeline(run)
        return 1
    print(f"\nchaos run FAILED (replay: python -m chaos --broker {run.broker} --seed {run.seed} "
          f"--profile {run.profile_name}); first differences:")
    for example in figures.examples[:20]:
        print("  " + example)
    _print_timeline(run)
    return 1


def _print_trail(run: Run, job_ids: list[str]) -> None:
    """Where lost jobs went: the parked queue (past the delivery limit), and what the workers logged of them."""
    from rewards import contract

    print(f"messages in {contract.PARKED_QUEUE}: {run.vhost.queued_messages((contract.PARKED_QUEUE,))}")
    for worker in run.workers:
        log = run.folder / f"{worker.name}.log"
        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
        trail = [line for line in lines if any(job_id in line for job_id in job_ids)]
        print(f"--- {worker.name} log, lines naming them ({len(trail)}):\n" + "\n".join(trail[-30:]))


def _print_timeline(run: Run) -> None:
    print(f"\nseed {run.seed}, broker {run.broker}; timeline:")
    print("\n".join(run.timeline.lines))
    for worker in run.workers:
        log = run.folder / f"{worker.name}.log"
        if log.exists():
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- {worker.name} log (last lines):\n" + "\n".join(tail))
