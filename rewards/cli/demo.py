"""`rewards demo`: a simulated month through a real worker, checked against the reference model.

With no flags it needs no servers: a SQLite file and kombu's `filesystem://`
broker in a temporary folder, and a real `celery -A workers worker`
subprocess consuming them, so every job goes through the real queue,
serialization and acks. `--database-url` / `--broker-url` point the same demo
at PostgreSQL and Redis.

Two reference partners check in every day, one regular and one PRO, and are
compared with the reference document's cumulative table; the others follow a
seeded random month (some PRO, several time zones, missed days, ~5% of jobs
delivered twice). Every job's status, every partner's balance and every
check-in day's streak and price are compared with the reference model
(chaos/model.py), which is written from DESIGN.md alone and imports nothing
from the engine: the demo never checks the engine with its own rule
functions. Any disagreement exits 1.

The demo never waits silently: each wait checks the worker process and gives
up (exit 2) when no job has finished for `--stall-s` seconds, naming the
oldest pending job, the broker folder's counts and the worker's last output.
Unless every figure agrees, the working folder is kept and its path printed.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from chaos.model import Model, Partner, load_catalog
from rewards import analytics, catalog, contract, db, queries
from rewards import settings as settings_module
from rewards.cli import tables
from rewards.cli.common import CliError
from rewards.cli.progress import DemoStalled, Progress, WorkerWatch
from rewards.cli.views import write_html
from rewards.client import RewardsClient
from rewards.models import metadata

ZONES = ("UTC", "Europe/Berlin", "America/New_York", "America/Los_Angeles", "Asia/Tokyo", "Australia/Sydney")
REFERENCE_PARTNERS = {1: False, 2: True}  # partner id → PRO
# The reference document's cumulative XP over a 30-day streak (regular, PRO).
REFERENCE_CUMULATIVE = {6: (60, 300), 7: (220, 1_100), 13: (280, 1_400), 14: (440, 2_200),
                        20: (500, 2_500), 21: (660, 3_300), 27: (720, 3_600), 28: (880, 4_400),
                        30: (900, 4_500)}
PRO_UNTIL = "2100-01-01T00:00:00+00:00"


@dataclass
class SimPartner:
    """Who a simulated partner is; what they must end with is the reference model's to say."""

    partner_id: int
    zone: str
    pro: bool
    attendance: float


@dataclass
class Tally:
    sent: int = 0
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, result: dict[str, Any]) -> None:
        self.by_status[result["status"]] = self.by_status.get(result["status"], 0) + 1


# A job, and the status the reference model says it must end with (None: not checked).
Job = tuple[str, dict[str, Any], str | None]
REFEREE_IDS_FROM = 1_000_000
ADJUSTMENT_XP = 250


def make_partners(count: int, rng: random.Random) -> list[SimPartner]:
    partners = [SimPartner(pid, "UTC", pro, 1.0) for pid, pro in REFERENCE_PARTNERS.items()]
    for pid in range(len(partners) + 1, count + 1):
        partners.append(SimPartner(pid, rng.choice(ZONES), rng.random() < 0.2, rng.choice((1.0, 0.9, 0.75))))
    return partners


def local_instant(day: date, zone: str, rng: random.Random) -> str:
    """An instant during the partner's local day, 08:00-21:59."""
    local = datetime.combine(day, clock_time(rng.randint(8, 21), rng.randint(0, 59)), ZoneInfo(zone))
    return local.astimezone(timezone.utc).isoformat()


def end_of_day(day: date) -> str:
    """Just before midnight UTC at the end of `day`: when the day's maintenance runs."""
    return datetime.combine(day, clock_time(23, 59), timezone.utc).isoformat()


class Demo:
    def __init__(self, partners: int, days: int, seed: int, out=sys.stdout):
        self.rng = random.Random(seed)
        self.days = days
        self.out = out
        self.partners = make_partners(partners, self.rng)
        self.model = Model(load_catalog(catalog_file()))
        self.first_day = datetime.now(timezone.utc).date() - timedelta(days=days + 2)
        self.tally = Tally()
        self.problems: list[str] = []
        self.maintenance_results: dict[str, dict] = {}

    # -- the month -----------------------------------------------------------------

    def run(self, client, progress) -> None:
        self.send_and_wait(client, self.plan_setup(), progress)
        for offset in range(self.days):
            day = self.first_day + timedelta(days=offset)
            # Tasks go once the day's check-ins are in: a claim's progress counts them.
            self.send_and_wait(client, self.with_redeliveries(self.plan_checkins(day)), progress)
            self.send_and_wait(client, self.with_redeliveries(self.plan_tasks(offset, day)), progress)
            self.run_maintenance(client, day, progress)
        self.run_maintenance(client, day, progress, final=True)

    def job(self, name: str, kwargs: dict[str, Any]) -> Job:
        """A job the demo sends, applied to the reference model in the order the demo sends it."""
        return name, kwargs, self.model.apply(name, kwargs)

    def plan_setup(self) -> list[Job]:
        return [self.job(contract.PARTNER_UPDATE, {"partner_id": p.partner_id, "timezone": p.zone,
                                                   "occurred_at": "2000-01-01T00:00:00+00:00",
                                                   **({"pro_until": PRO_UNTIL} if p.pro else {})})
                for p in self.partners]

    def with_redeliveries(self, jobs: list[Job]) -> list[Job]:
        """About 5% of jobs delivered twice; either copy may be the one that applies."""
        jobs = jobs + [job for job in jobs if self.rng.random() < 0.05]
        self.rng.shuffle(jobs)  # partners' jobs interleave; each partner has at most one of a kind a day
        return [(name, kwargs, None if jobs.count((name, kwargs, expected)) > 1 else expected)
                for name, kwargs, expected in jobs]

    def plan_checkins(self, day: date) -> list[Job]:
        jobs = []
        for partner in self.partners:
            if self.rng.random() < partner.attendance:
                jobs.append(self.job(contract.CHECKIN, {
                    "partner_id": partner.partner_id, "occurred_at": local_instant(day, partner.zone, self.rng)}))
        return jobs

    def plan_tasks(self, offset: int, day: date) -> list[Job]:
        """Day 1: start tasks. Days 2-4: referrals. Day 2: social claims. Day 8+: the rest."""
        def task_job(name: str, partner: SimPartner, task_id: str) -> Job:
            return self.job(name, {"partner_id": partner.partner_id, "task_id": task_id,
                                   "occurred_at": end_of_day(day)})

        jobs: list[Job] = []
        for partner in self.partners:
            pid = partner.partner_id
            if offset == 0:
                jobs.append(task_job(contract.TASK_START, partner, "telegram_bot"))
                jobs.append(task_job(contract.TASK_START, partner, "banking_app"))  # left to go stale
                if pid % 3 == 0:
                    jobs.append(task_job(contract.TASK_START, partner, "invite_3_friends"))
                if pid % 4 == 0:
                    jobs.append(task_job(contract.TASK_START, partner, "daily_checkin_5"))
            if 1 <= offset <= 3 and pid % 6 == 0:
                jobs.append(self.job(contract.REFERRAL_RECORD, {
                    "referrer_id": pid, "referee_id": REFEREE_IDS_FROM + pid * 10 + offset,
                    "occurred_at": end_of_day(day)}))
            if offset == 1 and pid % 5 != 0:
                jobs.append(task_job(contract.TASK_CLAIM, partner, "telegram_bot"))
            if offset == 7 and pid % 3 == 0:
                jobs.append(task_job(contract.TASK_CLAIM, partner, "invite_3_friends"))
            if offset == 8 and pid % 4 == 0:
                jobs.append(task_job(contract.TASK_CLAIM, partner, "daily_checkin_5"))
        if offset == 9:
            jobs.append(self.job(contract.ADJUST, {"partner_id": self.partners[2].partner_id,
                                                   "amount": ADJUSTMENT_XP,
                                                   "reason": "goodwill credit after a support ticket",
                                                   "request_id": "demo-support-1"}))
        return jobs

    def run_maintenance(self, client, day: date, progress, final: bool = False) -> None:
        jobs: list[Job] = [(name, {"now": end_of_day(day)}, None) for name in (
            contract.MAINTENANCE_EXPIRE_STREAKS, contract.MAINTENANCE_STREAK_RISK,
            contract.MAINTENANCE_SWEEP_STALE_TASKS, contract.MAINTENANCE_RELAY_OUTBOX)]
        if final:
            jobs = [(contract.MAINTENANCE_RECONCILE, {"full": True}, None)]
        for (name, _, _), result in zip(jobs, self.send_and_wait(client, jobs, progress)):
            self.maintenance_results[name] = result

    def send_and_wait(self, client, jobs: list[Job], progress) -> list[dict]:
        pending = [client.send(name, **kwargs) for name, kwargs, _ in jobs]
        self.tally.sent += len(pending)
        progress.enqueued += len(pending)
        results = []
        for (name, kwargs, expected), sent in zip(jobs, pending):
            progress.wait_for(sent, f"{name} {kwargs}")
            result = sent.get(timeout=60)
            results.append(result)
            if "status" in result:
                self.tally.add(result)
            if expected is not None and status_of(result) != expected:
                self.problems.append(f"{name} {kwargs}: {status_of(result)}, the reference model says {expected}")
            progress.completed()
        progress.show()
        return results

    # -- reporting -----------------------------------------------------------------

    def report(self, conn) -> None:
        self.check_against_model(conn)
        self.print_reference_progression()
        totals = conn.execute(text(
            "SELECT entry_type, COUNT(*), SUM(amount) FROM xp_ledger GROUP BY entry_type ORDER BY entry_type"
        )).fetchall()
        self.emit(tables.render(["entry type", "rows", "XP"], totals, title="XP by entry type"))
        self.print_leaderboards(conn)
        funnel = conn.execute(text(
            "SELECT task_id, COUNT(*), SUM(CASE WHEN status = 'COMPLETED' THEN 1 ELSE 0 END),"
            " SUM(CASE WHEN status = 'EXPIRED' THEN 1 ELSE 0 END) FROM partner_task GROUP BY task_id"
            " ORDER BY task_id")).fetchall()
        self.emit(tables.render(["task", "started", "completed", "expired"], funnel, title="Task funnel"))
        rows = sorted(self.tally.by_status.items()) + [("sent (jobs and maintenance runs)", self.tally.sent)]
        self.emit(tables.render(["result", "jobs"], rows,
                                title="Job results (each duplicate is a delivery that paid nothing twice)"))
        self.print_reconciliation()

    def print_leaderboards(self, conn) -> None:
        last_day = datetime.combine(self.last_day, clock_time(23, 59), timezone.utc)
        for kind, title in (("xp", "Top 10 by XP"), ("weekly", "Top 10 by XP in the last simulated week (UTC)"),
                            ("streak", "Top 10 by current streak")):
            rows = [(row.rank, str(row.partner_id), row.score)
                    for row in queries.leaderboard(conn, kind, 10, at=last_day)]
            self.emit(tables.render(["rank", "partner", kind], rows, title=title))

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.days - 1)

    def write_report(self, conn, path: Path) -> Path:
        """The analytics report of the simulated month, as the HTML page `rewards report --html` writes."""
        at = datetime.combine(self.last_day, clock_time(23, 59), timezone.utc)
        found = analytics.report(conn, self.first_day, self.last_day, catalog=catalog.load(), now=at)
        return write_html(found, path)

    def print_reconciliation(self) -> None:
        result = self.maintenance_results.get(contract.MAINTENANCE_RECONCILE, {})
        mismatches = result.get("mismatches")
        self.emit(tables.render(["partners checked", "mismatches"], [(result.get("examined"), mismatches)],
                                title="Reconciliation (full), run by the worker"))
        if mismatches != 0:
            self.problems.append(f"reconciliation: {result}")

    def check_against_model(self, conn) -> None:
        """Each partner's balance and each check-in day's streak and price, against the reference model."""
        balances = dict(conn.execute(text("SELECT id, xp FROM partner WHERE id < :r"),
                                     {"r": REFEREE_IDS_FROM}).fetchall())
        days = defaultdict(dict)
        for row in conn.execute(text("SELECT partner_id, day, streak, xp_granted FROM checkin")):
            # SQLite hands a raw query's date back as text.
            day = row.day if isinstance(row.day, date) else date.fromisoformat(row.day)
            days[row.partner_id][day] = (row.streak, row.xp_granted)
        agreeing = {"balances": 0, "check-in days": 0}
        for partner in self.partners:
            want = self.model.partners[partner.partner_id]
            agreeing["balances"] += self.compare(partner.partner_id, "xp", balances.get(partner.partner_id), want.xp)
            agreeing["check-in days"] += self.compare(partner.partner_id, "(streak, xp) by day",
                                                      days[partner.partner_id], model_days(want))
        checked = {"balances": len(self.partners), "check-in days": len(self.partners)}
        self.emit(tables.render(["figure", "partners checked", "agreeing"],
                                [(name, checked[name], agreeing[name]) for name in checked],
                                title="Against the reference model (chaos/model.py, written from DESIGN.md "
                                      "without the engine's rule functions)"))

    def compare(self, partner_id: int, figure: str, engine: Any, model: Any) -> bool:
        if engine != model:
            if isinstance(engine, dict):  # name only the days that differ
                differing = sorted(set(engine) | set(model), key=str)
                engine, model = ({str(d): f.get(d) for d in differing if engine.get(d) != model.get(d)}
                                 for f in (engine, model))
            self.problems.append(f"partner {partner_id}: {figure} {engine}, the reference model says {model}")
        return engine == model

    def print_reference_progression(self) -> None:
        regular, pro = (model_days(self.model.partners[pid]) for pid in REFERENCE_PARTNERS)
        rows = []
        for day, (ref_regular, ref_pro) in REFERENCE_CUMULATIVE.items():
            if day > self.days:
                break
            got = tuple(sum(xp for _, xp in list(partner.values())[:day]) for partner in (regular, pro))
            rows.append((day, got[0], ref_regular, got[1], ref_pro))
            if got != (ref_regular, ref_pro):
                self.problems.append(f"day {day}: cumulative {got}, reference document {ref_regular, ref_pro}")
        self.emit(tables.render(["day", "regular XP", "reference", "PRO XP", "reference"], rows,
                                title="Cumulative check-in XP of a daily partner vs the reference document"))

    def emit(self, text: str) -> None:
        print(f"\n{text}", file=self.out)


def demo_environment(workdir: Path, database_url: str | None, broker_url: str | None) -> dict[str, str]:
    """The demo's settings as environment variables: the embedded defaults, unless told otherwise."""
    database_url = database_url or f"sqlite:///{workdir / 'rewards.sqlite3'}"
    return {
        "REWARDS_DATABASE_URL": database_url,
        # Reads and pruning go to the demo's database too, whatever the caller's environment says.
        "REWARDS_READ_DATABASE_URL": database_url,
        "REWARDS_RETENTION_DATABASE_URL": database_url,
        "CELERY_BROKER_URL": broker_url or "filesystem://",
        "REWARDS_BROKER_FOLDER": str(workdir / "broker"),
        "CELERY_RESULT_BACKEND": f"file://{workdir / 'results'}",
    }


@contextmanager
def celery_urls(env: dict[str, str]) -> Iterator[None]:
    """Point Celery at the demo's broker and result store for the length of the block.

    Celery prefers CELERY_BROKER_URL and CELERY_RESULT_BACKEND from the
    environment over URLs given in code, so the demo's own client only talks
    to the demo's servers if these two say so; they are restored afterwards.
    """
    names = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.update({name: env[name] for name in names})
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def start_worker(workdir: Path, env: dict[str, str]) -> WorkerWatch:
    """The demo's worker; everything it prints (start-up errors included) goes to worker.log."""
    log_path = workdir / "worker.log"
    command = [sys.executable, "-m", "celery", "-A", "workers", "worker", "-Q", ",".join(contract.QUEUES),
               "-c", "2", "-P", "prefork", "-n", "demo@%h", "--loglevel=INFO"]
    repo_root = Path(__file__).resolve().parents[2]
    with log_path.open("wb") as log:
        process = subprocess.Popen(command, cwd=repo_root, env=os.environ | env, stdout=log,
                                   stderr=subprocess.STDOUT)
    broker_folder = Path(env["REWARDS_BROKER_FOLDER"]) if env["CELERY_BROKER_URL"] == "filesystem://" else None
    return WorkerWatch(process, log_path, broker_folder)


def stop_worker(worker: subprocess.Popen) -> None:
    worker.terminate()
    try:
        worker.wait(30)
    except subprocess.TimeoutExpired:
        worker.kill()
        worker.wait(30)


def prepare_schema(engine: Engine, database_url: str) -> None:
    if database_url.startswith("sqlite"):
        metadata.create_all(engine)  # the embedded default has no migrations to run
        return
    db.upgrade("head", database_url)


def add_commands(commands) -> None:
    """`rewards demo`."""
    demo = commands.add_parser("demo", help="simulate a month through a real worker and check every figure")
    demo.add_argument("--partners", type=int, default=200, help="how many partners (default 200)")
    demo.add_argument("--days", type=int, default=30, help="how many days (default 30)")
    demo.add_argument("--seed", type=int, default=7, help="random seed; the same seed replays the same month")
    demo.add_argument("--database-url", help="use this database instead of a temporary SQLite file")
    demo.add_argument("--broker-url", help="use this broker instead of a temporary filesystem:// one")
    demo.add_argument("--report", default="rewards-demo-report.html",
                      help="where to write the month's HTML analytics report (default rewards-demo-report.html)")
    demo.add_argument("--stall-s", type=float, default=60.0,
                      help="give up when no job finishes for this long (default 60)")
    demo.set_defaults(handler=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    if args.partners < 2 or args.days < 1:
        raise CliError("the demo needs --partners of at least 2 and --days of at least 1")
    if args.stall_s <= 0:
        raise CliError("--stall-s must be a positive number of seconds")
    return run_demo(args.partners, args.days, args.seed, args.database_url, args.broker_url, Path(args.report),
                    args.stall_s)


def run_demo(partners: int, days: int, seed: int, database_url: str | None, broker_url: str | None,
             report_path: Path = Path("rewards-demo-report.html"), stall_s: float = 60.0) -> int:
    """0 when every figure agrees, 1 when one does not, 2 when the demo could not finish.

    The working folder (database, broker folders, worker.log) is removed after
    a run that agrees, and kept, with its path printed, after anything else.
    """
    # A terminated demo stops its worker and keeps its folder, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = Path(tempfile.mkdtemp(prefix="rewards-demo-"))
    exit_code = 2
    try:
        exit_code = _run_in(workdir, partners, days, seed, database_url, broker_url, report_path, stall_s)
        return exit_code
    finally:
        if exit_code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir} (worker.log, database, broker folders) for inspection", file=sys.stderr)


def _run_in(workdir: Path, partners: int, days: int, seed: int, database_url: str | None,
            broker_url: str | None, report_path: Path, stall_s: float) -> int:
    env = demo_environment(workdir, database_url, broker_url)
    demo_settings = settings_module.load(os.environ | env)
    (workdir / "results").mkdir()
    print(f"database {env['REWARDS_DATABASE_URL']}\nbroker   {env['CELERY_BROKER_URL']}\n"
          f"simulating {days} days for {partners} partners (seed {seed})")
    engine = db.make_engine(demo_settings.database_url)
    prepare_schema(engine, demo_settings.database_url)
    watch = start_worker(workdir, env)
    try:
        with celery_urls(env):
            return _simulate(partners, days, seed, demo_settings, engine, report_path,
                             Progress(watch=watch, stall_s=stall_s))
    except DemoStalled as stalled:
        print(f"\nthe demo cannot finish: {stalled}\n--- the worker's output, last lines of {watch.log_path}:\n"
              f"{watch.log_tail()}", file=sys.stderr)
        return 2
    finally:
        stop_worker(watch.process)
        engine.dispose()


def _simulate(partners: int, days: int, seed: int, demo_settings: settings_module.Settings,
              engine: Engine, report_path: Path, progress: Progress) -> int:
    demo = Demo(partners, days, seed)
    client = RewardsClient(settings=demo_settings)
    started = time.monotonic()
    try:
        demo.run(client, progress)
    finally:
        progress.finish()
        client.close()
    took_s = time.monotonic() - started
    print(f"{demo.tally.sent:,} jobs in {took_s:.1f} s ({demo.tally.sent / took_s:,.0f}/s) through a real worker")
    with engine.connect() as conn:
        demo.report(conn)
        written = demo.write_report(conn, report_path)
    print(f"\nThe month's analytics report (charts, open it in a browser): {written}")
    if demo.problems:
        print(f"\n{len(demo.problems)} figure(s) disagree with the reference model:", file=sys.stderr)
        for problem in demo.problems[:20]:
            print(f"  {problem}", file=sys.stderr)
        return 1
    print("\nEvery figure agrees with the reference model (chaos/model.py).")
    return 0


def model_days(partner: Partner) -> dict[date, tuple[int, int]]:
    """The reference model's (streak, XP) of each check-in day, in day order."""
    return {day.day: (day.streak_days, day.xp_granted) for day in partner.days()}


def status_of(result: dict[str, Any]) -> str:
    """A job's status as the reference model spells it: "rejected:<reason>" for a refusal."""
    status = result.get("status")
    return f"rejected:{result.get('reason')}" if status == "rejected" else str(status)


def catalog_file() -> Path:
    """The catalogue the demo's worker loads (REWARDS_CATALOG_PATH, else the packaged one)."""
    configured = os.environ.get("REWARDS_CATALOG_PATH", "").strip()
    return Path(configured) if configured else Path(catalog.__file__).with_name("catalog.toml")
