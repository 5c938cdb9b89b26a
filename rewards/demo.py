"""`rewards demo`: a simulated month through a real worker, checked against the rules.

With no flags it needs no servers: a SQLite file and kombu's `filesystem://`
broker in a temporary folder, and a real `celery -A workers worker`
subprocess consuming them, so every job goes through the real queue,
serialization and acks. `--database-url` / `--broker-url` point the same demo
at PostgreSQL and Redis.

Two reference partners check in every day, one regular and one PRO, and are
compared with the reference document's cumulative table; the others follow a
seeded random month (some PRO, several time zones, missed days, ~5% of jobs
delivered twice). Every partner's balance is compared with an in-memory model
built from the same rule functions. Any disagreement exits 1.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import date, datetime, time as clock_time, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from rewards import rules, tables

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney")
REFERENCE_PARTNERS = {1: False, 2: True}  # partner id → PRO
# The reference document's cumulative XP over a 30-day streak (regular, PRO).
REFERENCE_CUMULATIVE = {6: (60, 300), 7: (220, 1_100), 13: (280, 1_400), 14: (440, 2_200),
                        20: (500, 2_500), 21: (660, 3_300), 27: (720, 3_600), 28: (880, 4_400),
                        30: (900, 4_500)}
PRO_UNTIL = "2100-01-01T00:00:00+00:00"


@dataclass
class SimPartner:
    """What the demo expects for one partner, computed with the rule functions."""

    partner_id: int
    zone: str
    pro: bool
    attendance: float
    streak_days: int = 0
    last_day: date | None = None
    xp: int = 0
    daily_xp: list[int] = field(default_factory=list)

    def check_in(self, day: date, policy: rules.Policy) -> None:
        self.streak_days = rules.next_streak_days(self.streak_days, self.last_day, day)
        self.last_day = day
        granted = rules.checkin_reward(self.streak_days, self.pro, policy).xp_granted
        self.xp += granted
        self.daily_xp.append(granted)


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        self.by_status[result["status"]] = self.by_status.get(result["status"], 0) + 1


def make_partners(count: int, rng: random.Random) -> list[SimPartner]:
    partners = [SimPartner(pid, "UTC", pro, 1.0) for pid, pro in REFERENCE_PARTNERS.items()]
    for pid in range(len(partners) + 1, count + 1):
        partners.append(SimPartner(pid, rng.choice(ZONES), rng.random() < 0.2, rng.choice((1.0, 0.9, 0.75))))
    return partners


def local_instant(day: date, zone: str, rng: random.Random) -> str:
    """An instant during the partner's local day, 08:00-21:59."""
    local = datetime.combine(day, clock_time(rng.randint(8, 21), rng.randint(0, 59)), ZoneInfo(zone))
    return local.astimezone(timezone.utc).isoformat()


class Demo:
    def __init__(self, partners: int, days: int, seed: int, workdir: Path, out=sys.stdout):
        self.rng = random.Random(seed)
        self.days = days
        self.workdir = workdir
        self.out = out
        self.partners = make_partners(partners, self.rng)
        self.first_day = datetime.now(timezone.utc).date() - timedelta(days=days + 2)
        self.tally = Tally()
        self.problems: list[str] = []

    # -- running -----------------------------------------------------------------

    def run(self, client, progress) -> None:
        from rewards import contract

        policy = rules.Policy()
        setup = [(contract.PARTNER_UPDATE, {"partner_id": p.partner_id, "timezone": p.zone,
                                            "occurred_at": "2000-01-01T00:00:00+00:00",
                                            **({"pro_until": PRO_UNTIL} if p.pro else {})})
                 for p in self.partners]
        self.send_and_wait(client, setup, progress)
        for offset in range(self.days):
            day = self.first_day + timedelta(days=offset)
            self.send_and_wait(client, self.plan_day(day, policy), progress)

    def plan_day(self, day: date, policy: rules.Policy) -> list[tuple[str, dict]]:
        from rewards import contract

        jobs = []
        for partner in self.partners:
            if self.rng.random() >= partner.attendance:
                continue
            partner.check_in(day, policy)
            job = (contract.CHECKIN, {"partner_id": partner.partner_id,
                                      "occurred_at": local_instant(day, partner.zone, self.rng)})
            jobs.append(job)
            if self.rng.random() < 0.05:  # delivered twice
                jobs.append(job)
        self.rng.shuffle(jobs)  # partners' jobs interleave; one partner has one check-in a day
        return jobs

    def send_and_wait(self, client, jobs: list[tuple[str, dict]], progress) -> None:
        pending = [client.send(name, **kwargs) for name, kwargs in jobs]
        self.tally.sent += len(pending)
        progress.enqueued += len(pending)
        for result in pending:
            while not result.ready():
                progress.show()
                time.sleep(0.02)
            outcome = result.get(timeout=60)
            self.tally.add(outcome)
            if outcome["status"] == "rejected":
                self.problems.append(f"job rejected: {outcome}")
            progress.done += 1
        progress.show()

    # -- reporting ---------------------------------------------------------------

    def report(self, conn) -> None:
        from sqlalchemy import text

        balances = dict(conn.execute(text("SELECT id, xp FROM partner")).fetchall())
        self.check_balances(balances)
        self.print_reference_progression()
        totals = conn.execute(text(
            "SELECT entry_type, COUNT(*), SUM(amount) FROM xp_ledger GROUP BY entry_type ORDER BY entry_type"
        )).fetchall()
        self.emit(tables.render(["entry type", "rows", "XP"], totals, title="XP by entry type"))
        top_xp = conn.execute(text("SELECT id, xp FROM partner ORDER BY xp DESC, id LIMIT 10")).fetchall()
        self.emit(tables.render(["partner", "XP"], top_xp, title="Top 10 by XP"))
        top_streak = conn.execute(text(
            "SELECT id, checkin_streak, longest_streak FROM partner ORDER BY checkin_streak DESC, id LIMIT 10"
        )).fetchall()
        self.emit(tables.render(["partner", "streak", "longest"], top_streak, title="Top 10 by current streak"))
        rows = [(status, count) for status, count in sorted(self.tally.by_status.items())]
        self.emit(tables.render(["result", "jobs"], rows + [("sent", self.tally.sent)],
                                title="Jobs (duplicates absorbed = deliveries that paid nothing twice)"))

    def check_balances(self, balances: dict[int, int]) -> None:
        for partner in self.partners:
            actual = balances.get(partner.partner_id)
            if actual != partner.xp:
                self.problems.append(f"partner {partner.partner_id}: xp {actual}, rules say {partner.xp}")

    def print_reference_progression(self) -> None:
        regular, pro = (self.partners[0], self.partners[1])
        rows = []
        for day, (ref_regular, ref_pro) in REFERENCE_CUMULATIVE.items():
            if day > self.days:
                break
            got = (sum(regular.daily_xp[:day]), sum(pro.daily_xp[:day]))
            rows.append((day, got[0], ref_regular, got[1], ref_pro))
            if got != (ref_regular, ref_pro):
                self.problems.append(f"day {day}: cumulative {got}, reference document {ref_regular, ref_pro}")
        self.emit(tables.render(["day", "regular XP", "reference", "PRO XP", "reference"], rows,
                                title="Cumulative XP of a daily partner vs the reference document"))

    def emit(self, text: str) -> None:
        print(f"\n{text}", file=self.out)


class Progress:
    """`[######....] 1,234/6,000 jobs  310/s` on one line; every 10% when not a terminal."""

    def __init__(self, stream=sys.stderr):
        self.stream = stream
        self.enqueued = 0
        self.done = 0
        self.started = time.monotonic()
        self.last_drawn = 0.0
        self.last_decile = -1
        self.tty = stream.isatty()

    def show(self) -> None:
        now = time.monotonic()
        if self.tty and now - self.last_drawn < 0.1 and self.done < self.enqueued:
            return
        self.last_drawn = now
        rate = self.done / max(now - self.started, 1e-6)
        filled = int(30 * self.done / max(self.enqueued, 1))
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {self.done:,}/{self.enqueued:,} jobs  {rate:,.0f}/s"
        if self.tty:
            print(f"\r{line}", end="", file=self.stream, flush=True)
        elif self.done * 10 // max(self.enqueued, 1) != self.last_decile:
            self.last_decile = self.done * 10 // max(self.enqueued, 1)
            print(line, file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            print(file=self.stream)


def configure_environment(workdir: Path, database_url: str | None, broker_url: str | None) -> dict[str, str]:
    """The embedded defaults, unless told otherwise; set here before any setting is read."""
    env = {
        "REWARDS_DATABASE_URL": database_url or f"sqlite:///{workdir / 'rewards.sqlite3'}",
        "CELERY_BROKER_URL": broker_url or "filesystem://",
        "REWARDS_BROKER_FOLDER": str(workdir / "broker"),
        "CELERY_RESULT_BACKEND": f"file://{workdir / 'results'}",
    }
    (workdir / "results").mkdir(parents=True, exist_ok=True)
    os.environ.update(env)
    return env


def start_worker(workdir: Path) -> tuple[subprocess.Popen, Path]:
    log_path = workdir / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", "checkins,claims,maintenance",
               "-c", "2", "-P", "prefork", "-n", "demo@%h", "--loglevel=INFO", f"--logfile={log_path}"]
    repo_root = Path(__file__).resolve().parents[1]
    return subprocess.Popen(command, cwd=repo_root, env=os.environ.copy(), stdout=subprocess.DEVNULL,
                            stderr=subprocess.STDOUT), log_path


def prepare_schema(database_url: str) -> None:
    from rewards import db

    if database_url.startswith("sqlite"):
        db.get_engine()  # the embedded default creates its tables on first use
        return
    from alembic import command

    from rewards.cli import alembic_config

    command.upgrade(alembic_config(), "head")


def run_demo(partners: int, days: int, seed: int, database_url: str | None, broker_url: str | None) -> int:
    with tempfile.TemporaryDirectory(prefix="rewards-demo-") as folder:
        workdir = Path(folder)
        env = configure_environment(workdir, database_url, broker_url)
        print(f"database {env['REWARDS_DATABASE_URL']}\nbroker   {env['CELERY_BROKER_URL']}\n"
              f"simulating {days} days for {partners} partners (seed {seed})")
        prepare_schema(env["REWARDS_DATABASE_URL"])
        worker, log_path = start_worker(workdir)
        try:
            return _simulate(partners, days, seed, workdir)
        finally:
            worker.terminate()
            try:
                worker.wait(30)
            except subprocess.TimeoutExpired:
                worker.kill()


def _simulate(partners: int, days: int, seed: int, workdir: Path) -> int:
    from rewards import db
    from rewards.client import RewardsClient

    demo = Demo(partners, days, seed, workdir)
    client = RewardsClient()
    progress = Progress()
    started = time.monotonic()
    try:
        demo.run(client, progress)
    finally:
        progress.finish()
        client.close()
    took_s = time.monotonic() - started
    print(f"{demo.tally.sent:,} jobs in {took_s:.1f} s ({demo.tally.sent / took_s:,.0f}/s) through a real worker")
    with db.get_engine().connect() as conn:
        demo.report(conn)
    if demo.problems:
        print(f"\n{len(demo.problems)} figure(s) disagree with the rules:", file=sys.stderr)
        for problem in demo.problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nEvery figure agrees with the rules.")
    return 0
