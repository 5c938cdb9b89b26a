"""A simulated day at scale: N partners, a day of check-ins, every maintenance job (not a test).

    make soak-scale                                     # SCALE_PARTNERS, SCALE_MIGRATE_FROM
    SCALE_PARTNERS=50000 SCALE_MIGRATE_FROM= make soak-scale

The soak owns a database and a Redis database. SCALE_ADMIN_DATABASE_URL is
the owner's URL: the soak empties (or, to load at an older revision,
recreates) that database and fills it. Jobs run as the engine's
least-privilege roles (REWARDS_DATABASE_URL, REWARDS_RETENTION_DATABASE_URL),
whose login roles it creates when missing and puts in migration 0009's
groups. REWARDS_REDIS_URL holds the boards and the relayed events, and the
broker and results of the result-size run; it is flushed.

1. Load, as the owner, by INSERT … SELECT over generate_series:
   SCALE_PARTNERS partners in the twelve zones of benchmarks/streak_expiry,
   as they stand when the simulated day begins: 75% checked in yesterday,
   10% the day before (PRO ones alive on a freeze, the others reset by last
   night's expiry), 10% lapsed days ago, 5% never; a tenth are PRO. Each
   has up to HISTORY_DAYS days of check-ins, priced and described by the
   engine's own code, with their ledger rows (balance_after chained, xp
   their sum), audit rows and delivered milestone events; the badges their
   streaks reached; a twentieth a task started in the last week. The
   reconciler's checkpoint is put past that history, as if earlier days had
   been reconciled, and the Redis boards are built.
2. SCALE_MIGRATE_FROM=<revision> loads at that revision and upgrades to
   head, one revision at a time, while a writer applies the day's first
   check-ins: each migration's time and the writer's slowest transaction.
3. The day: WAVE_PERCENT of the partners check in once, in their own local
   day, in time order, through `apply_checkin_batch` (the
   `rewards.checkin.batch` job's body) in batches of REWARDS_BATCH_MAX, one
   transaction each. After each batch the two 5-second jobs (relay_outbox,
   update_leaderboards) run as beat would: 500 check-ins are about what 5 s
   bring at 10 million partners. Then the hourly jobs at every hour from the
   first zone's evening to the last zone's midnight, and the daily
   reconcile. At every tick a job runs again until it reports it caught up.
4. Figures: rows and bytes per table, bytes per check-in over the wave, each
   job's runs and time, a full reconcile, the leaderboards (agreement with
   PostgreSQL, a rebuild, Redis bytes per member), Redis bytes per stored
   result (benchmarks/result_size), and all of it taken linearly to
   10,000,000 partners.

Figures are from a shared machine: noisy, and the server's own settings
(autovacuum, shared_buffers) are printed with them.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from datetime import time as clock_time
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import redis
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, make_url, text

import celeryconfig
from benchmarks import result_size
from benchmarks.streak_expiry import ZONES
from rewards import db, rules
from rewards import settings as settings_module
from rewards.cli.tables import render
from rewards.contract import keys
from rewards.contract.payloads import CheckinBatchJob, CheckinJob
from rewards.contract.results import BatchResult
from rewards.ledger import checkins, outbox, repricing
from rewards.ledger.batches import apply_checkin_batch
from rewards.settings import Settings
from schedules import (
    expire_streaks,
    reconcile,
    relay_outbox,
    sinks,
    streak_risk,
    sweep_stale_tasks,
    update_leaderboards,
)
from schedules.runner import Summary, save_checkpoint
from workers.base import backoff_s

UTC = timezone.utc
# A Wednesday; no zone of ZONES changes its clock in the two weeks before it.
DAY = date(2026, 11, 18)
HISTORY_DAYS = 4
STREAK_DAYS_MAX = 45
# The oldest last check-in of a lapsed partner, and so of the history.
LAPSED_DAYS_MAX = 10
WAVE_PERCENT = 80
# Check-ins happen in the partner's waking hours: from 07:00, over 16 hours.
WAKING_START = clock_time(7)
WAKING_MINUTES = 16 * 60
FILL_CHUNK_PARTNERS = 50_000
TEN_MILLION = 10_000_000
SOCIAL_TASK_ID = "community_chat"           # a catalogue task with no requirement
# A job that never reports caught up stops the soak instead of spinning.
RUNS_MAX = 1_000
# Writer batches before the first migration starts and after the last one ends.
WRITER_MARGIN_BATCHES = 5
GIB = 2**30
MIB = 2**20


# -- where the soak runs -----------------------------------------------------------

@dataclass(frozen=True)
class Target:
    """The soak's database (the owner's, the worker's and retention's URLs) and Redis database."""

    admin_url: str
    worker_url: str
    retention_url: str
    redis_url: str

    @classmethod
    def from_environment(cls, current: Settings) -> Target:
        admin_url = os.environ.get("SCALE_ADMIN_DATABASE_URL", "").strip()
        if not admin_url or not current.redis_url:
            raise SystemExit("set SCALE_ADMIN_DATABASE_URL (the owner's URL of the soak's own database) and "
                             "REWARDS_REDIS_URL (a Redis database it may flush); `make soak-scale` sets both")
        return cls(admin_url, current.database_url, current.retention_database_url, current.redis_url)

    @property
    def database(self) -> str:
        return make_url(self.admin_url).database


@dataclass
class Connections:
    admin: Engine       # the owner: loading, sizes, VACUUM
    worker: Engine      # what jobs and maintenance run as
    retention: Engine   # what pruning runs as
    store: redis.Redis

    @classmethod
    def open(cls, target: Target, current: Settings) -> Connections:
        def engine(url: str, statement_timeout_ms: int) -> Engine:
            return db.make_engine(url, statement_timeout_ms=statement_timeout_ms,
                                  lock_timeout_ms=current.lock_timeout_ms,
                                  connect_timeout_s=current.connect_timeout_s)
        # The owner's statements (a chunk of the load, VACUUM, a count) outlast a job's limit.
        return cls(admin=engine(target.admin_url, 3_600_000),
                   worker=engine(target.worker_url, current.statement_timeout_ms),
                   retention=engine(target.retention_url, current.statement_timeout_ms),
                   store=redis.Redis.from_url(target.redis_url, socket_timeout=300))

    def close(self) -> None:
        for engine in (self.admin, self.worker, self.retention):
            engine.dispose()
        self.store.close()


def _on_server(admin_url: str, *statements: str) -> None:
    """Statements about the URL's database (`{name}`), run as its owner from the server's `postgres` database."""
    engine = create_engine(make_url(admin_url).set(database="postgres"), isolation_level="AUTOCOMMIT")
    name = engine.dialect.identifier_preparer.quote(make_url(admin_url).database)
    try:
        with engine.connect() as conn:
            for statement in statements:
                conn.execute(text(statement.format(name=name)))
    finally:
        engine.dispose()


def drop_database(admin_url: str) -> None:
    _on_server(admin_url, "DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def recreate_database(admin_url: str) -> None:
    _on_server(admin_url, "DROP DATABASE IF EXISTS {name} WITH (FORCE)", "CREATE DATABASE {name}")


# Login roles and the groups migration 0009 creates (cluster-wide, like the roles).
_JOIN_GROUP = """
    DO $$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role} LOGIN; END IF;
    END $$;
    GRANT {group} TO {role};
"""


def ensure_login_roles(admin: Engine, target: Target) -> None:
    """The worker's and retention's login roles exist and belong to their groups (run after 0009)."""
    owner = make_url(target.admin_url).username
    with admin.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.execute(text("SET client_min_messages = warning"))  # "already a member" is a notice
        for url, group in ((target.worker_url, "rewards_worker"), (target.retention_url, "rewards_retention")):
            role = make_url(url).username
            if role != owner:
                conn.exec_driver_sql(_JOIN_GROUP.format(role=role, group=group))


def revision_of(admin: Engine) -> str:
    with admin.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


def head_revision(admin_url: str) -> str:
    return ScriptDirectory.from_config(db.alembic_config(admin_url)).get_current_head()


def revisions_after(admin_url: str, revision: str) -> list[str]:
    """The revisions an upgrade from `revision` to head applies, oldest first."""
    script = ScriptDirectory.from_config(db.alembic_config(admin_url))
    return [step.revision for step in reversed(list(script.iterate_revisions("head", revision)))]


def empty_tables(admin: Engine) -> None:
    """Every table of the schema emptied (fresh files, so no earlier run's dead rows are measured)."""
    with admin.begin() as conn:
        tables = conn.execute(text(
            "SELECT quote_ident(c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition "
            "AND c.relname <> 'alembic_version'")).scalars().all()
        conn.execute(text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))


# -- the load ----------------------------------------------------------------------

def history_days() -> list[date]:
    """Every day a loaded partner may have checked in on."""
    first = DAY - timedelta(days=LAPSED_DAYS_MAX + HISTORY_DAYS - 1)
    return [first + timedelta(days=offset) for offset in range((DAY - first).days)]


def price_templates(policy: rules.Policy) -> tuple[list[dict], list[dict]]:
    """What the engine writes for a check-in of each (day, streak, PRO), partner aside.

    Priced by `rules.checkin_reward`, its ledger entries and audit payload
    from `checkins.checkin_credit`, its milestone event from `repricing`: the
    load's rows are the engine's, and the SQL only adds the partner.
    """
    templates, entries = [], []
    for day in history_days():
        job = CheckinJob.model_validate({"partner_id": 1, "occurred_at": f"{day.isoformat()}T12:00:00+00:00"})
        for streak_days in range(1, STREAK_DAYS_MAX + 1):
            for pro in (False, True):
                priced = rules.PricedCheckin(day, streak_days, 0, rules.checkin_reward(streak_days, pro, policy))
                credit = checkins.checkin_credit(SimpleNamespace(longest_streak=streak_days), job, priced, policy)
                milestone = (repricing.milestone_event(1, priced).payload
                             if rules.is_milestone(streak_days, policy) else None)
                cell = {"day": day.isoformat(), "streak": streak_days, "pro": pro}
                templates.append({**cell, "base_xp": credit.base_xp, "bonus_xp": credit.bonus_xp,
                                  "multiplier": credit.multiplier, "xp_granted": credit.xp_granted,
                                  "audit": credit.audit_payload, "milestone": milestone})
                entries.extend({**cell, "position": position, "entry_type": entry.entry_type,
                                "base_amount": entry.base_amount, "multiplier": entry.multiplier,
                                "description": entry.description}
                               for position, entry in enumerate(credit.entries))
    return templates, entries


# Who each partner is, from their id alone. `spread` (id * 7919 % 100) picks
# the profile; the wave's choice (id * 761 % 1000, see _WAVE) takes the same
# share of every profile.
_FILL_PARTNERS = """
CREATE TEMP TABLE fill_partner ON COMMIT DROP AS
SELECT g AS id, (CAST(:zones AS text[]))[1 + g % cardinality(CAST(:zones AS text[]))] AS timezone,
       g % 10 = 0 AS pro, CAST(1 + (g * 37) % :streak_days_max AS int) AS streak_days,
       CASE WHEN spread < 5 THEN NULL
            WHEN spread < 15 THEN CAST(:day AS date) - 3 - CAST(g % (:lapsed_days_max - 2) AS int)
            WHEN spread < 25 THEN CAST(:day AS date) - 2
            ELSE CAST(:day AS date) - 1 END AS last_day,
       spread >= 25 OR (spread >= 15 AND g % 10 = 0) AS alive
FROM generate_series(CAST(:first_id AS bigint), :last_id) AS g,
     LATERAL (SELECT CAST((g * 7919) % 100 AS int) AS spread) AS s
"""
# Each partner's check-ins: the last streak_days days up to last_day (at most
# HISTORY_DAYS of them), each at a waking minute of its local day, priced by
# its template, with the balance after it.
_FILL_DAYS = """
CREATE TEMP TABLE fill_day ON COMMIT DROP AS
SELECT d.*, t.base_xp, t.bonus_xp, t.multiplier, t.xp_granted, t.audit, t.milestone,
       SUM(t.xp_granted) OVER (PARTITION BY d.partner_id ORDER BY d.day) AS xp_after
FROM (SELECT p.id AS partner_id, p.pro, p.last_day - k AS day, p.streak_days - k AS streak,
             (p.last_day - k + CAST(:waking_start AS time)
              + ((p.id * 13 + k * 131) % :waking_minutes) * interval '1 minute') AT TIME ZONE p.timezone
                 AS occurred_at
      FROM fill_partner p, generate_series(0, least(p.streak_days, :history_days) - 1) AS k
      WHERE p.last_day IS NOT NULL) AS d
JOIN jsonb_to_recordset(CAST(:templates AS jsonb))
     AS t(day date, streak int, pro boolean, base_xp int, bonus_xp int, multiplier int, xp_granted int,
          audit jsonb, milestone jsonb)
  ON t.day = d.day AND t.streak = d.streak AND t.pro = d.pro
"""
_INSERT_PARTNERS = """
INSERT INTO partner (id, xp, checkin_streak, longest_streak, last_checkin_day, last_checkin_at,
                     total_checkins, pro_until, timezone, created_at, updated_at)
SELECT p.id, COALESCE(l.xp_after, 0), CASE WHEN p.alive THEN p.streak_days ELSE 0 END,
       CASE WHEN p.last_day IS NULL THEN 0 ELSE p.streak_days END, p.last_day, l.occurred_at,
       CASE WHEN p.last_day IS NULL THEN 0 ELSE p.streak_days END,
       CASE WHEN p.pro THEN CAST(:pro_until AS timestamptz) END, p.timezone, :created_at, :created_at
FROM fill_partner p
LEFT JOIN (SELECT DISTINCT ON (partner_id) partner_id, xp_after, occurred_at FROM fill_day
           ORDER BY partner_id, day DESC) AS l ON l.partner_id = p.id
"""
_INSERT_CHECKINS = """
INSERT INTO checkin (partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted, occurred_at,
                     frozen_days, created_at)
SELECT partner_id, day, streak, base_xp, bonus_xp, multiplier, xp_granted, occurred_at, 0, occurred_at
FROM fill_day
"""
# Ids are given in (partner, day, entry) order, so each partner's balance_after
# chain runs in id order as the reconciler reads it.
_INSERT_LEDGER = f"""
INSERT INTO xp_ledger (id, partner_id, entry_type, base_amount, multiplier, amount, balance_after,
                       idempotency_key, rule_version, description, occurred_at, created_at)
SELECT :first_ledger_id - 1 + row_number() OVER (ORDER BY d.partner_id, d.day, e.position),
       d.partner_id, e.entry_type, e.base_amount, e.multiplier, e.base_amount * e.multiplier,
       d.xp_after - d.xp_granted + SUM(e.base_amount * e.multiplier)
           OVER (PARTITION BY d.partner_id, d.day ORDER BY e.position),
       CASE e.entry_type WHEN 'checkin' THEN {keys.sql(keys.CHECKIN, partner_id="d.partner_id", day="d.day")}
                         ELSE {keys.sql(keys.STREAK_BONUS, partner_id="d.partner_id", day="d.day")} END,
       :rule_version, e.description, d.occurred_at, d.occurred_at
FROM fill_day d
JOIN jsonb_to_recordset(CAST(:entries AS jsonb))
     AS e(day date, streak int, pro boolean, position int, entry_type text, base_amount bigint,
          multiplier int, description text)
  ON e.day = d.day AND e.streak = d.streak AND e.pro = d.pro
"""
_INSERT_AUDIT = """
INSERT INTO audit_event (event_type, partner_id, payload, created_at)
SELECT 'checkin', partner_id,
       audit || jsonb_build_object('partner_id', partner_id, 'timestamp', to_jsonb(occurred_at),
                                   'xp_after', xp_after, 'xp_before', xp_after - xp_granted),
       occurred_at
FROM fill_day ORDER BY occurred_at
"""
_INSERT_MILESTONES = f"""
INSERT INTO outbox (event_id, event_type, partner_id, payload, idempotency_key, created_at, attempts,
                    next_attempt_at, delivered_at)
SELECT gen_random_uuid(), :event_type, partner_id, milestone,
       {keys.sql(keys.MILESTONE_EVENT, partner_id="partner_id", day="day")},
       occurred_at, 1, occurred_at, occurred_at + interval '2 seconds'
FROM fill_day WHERE milestone IS NOT NULL ORDER BY occurred_at
"""
_INSERT_BADGES = """
INSERT INTO partner_badge (partner_id, badge, streak_days, checkin_day, awarded_at)
SELECT p.id, b.badge, b.streak_days, p.last_day - (p.streak_days - b.streak_days),
       CAST(p.last_day - (p.streak_days - b.streak_days) AS timestamp) AT TIME ZONE p.timezone
FROM fill_partner p
JOIN jsonb_to_recordset(CAST(:badges AS jsonb)) AS b(streak_days int, badge text)
  ON b.streak_days <= p.streak_days
WHERE p.last_day IS NOT NULL
"""
# One partner in twenty started a task during the last week: some go stale during the day.
_INSERT_TASKS = """
INSERT INTO partner_task (partner_id, task_id, attempt, status, initial_metric_value, start_day, started_at)
SELECT id, :task_id, 1, 'STARTED', 0, CAST(started_at AT TIME ZONE timezone AS date), started_at
FROM (SELECT id, timezone, CAST(:day AS timestamptz) - interval '7 days'
                           + ((id * 97) % 10080) * interval '1 minute' AS started_at
      FROM fill_partner WHERE id % 20 = 3) AS started
"""
_FILL_STEPS = (_FILL_PARTNERS, _FILL_DAYS, _INSERT_PARTNERS, _INSERT_CHECKINS, _INSERT_LEDGER, _INSERT_AUDIT,
               _INSERT_MILESTONES, _INSERT_BADGES, _INSERT_TASKS)


@dataclass(frozen=True)
class Load:
    partners: int
    rows: int
    took_s: float
    vacuum_s: float


def fill_parameters(policy: rules.Policy) -> dict:
    templates, entries = price_templates(policy)
    return {
        "zones": list(ZONES), "day": DAY, "streak_days_max": STREAK_DAYS_MAX,
        "lapsed_days_max": LAPSED_DAYS_MAX, "history_days": HISTORY_DAYS,
        "waking_start": WAKING_START, "waking_minutes": WAKING_MINUTES,
        "templates": json.dumps(templates), "entries": json.dumps(entries),
        "badges": json.dumps([{"streak_days": days, "badge": badge} for days, badge in rules.STREAK_BADGES]),
        "pro_until": datetime(2030, 1, 1, tzinfo=UTC), "created_at": datetime.combine(DAY, clock_time(), UTC)
        - timedelta(days=90), "rule_version": policy.version, "event_type": outbox.CHECKIN_MILESTONE,
        "task_id": SOCIAL_TASK_ID,
    }


def fill_chunk(conn: Connection, first_id: int, last_id: int, parameters: dict) -> int:
    """One chunk of partners and everything they hold, in the caller's transaction; rows written."""
    conn.execute(text("SET LOCAL TimeZone = 'UTC'"))  # to_jsonb(timestamptz) as the engine writes it
    next_ledger_id = conn.execute(text("SELECT COALESCE(MAX(id), 0) + 1 FROM xp_ledger")).scalar_one()
    bound = {**parameters, "first_id": first_id, "last_id": last_id, "first_ledger_id": next_ledger_id}
    written = 0
    for statement in _FILL_STEPS:
        written += max(0, conn.execute(text(statement), bound).rowcount)
    conn.execute(text("SELECT setval(pg_get_serial_sequence('xp_ledger', 'id'), MAX(id)) FROM xp_ledger"))
    return written


def load(conns: Connections, partners: int, policy: rules.Policy, say: Callable[[str], None]) -> Load:
    """Fill `partners` partners chunk by chunk, then VACUUM ANALYZE, set checkpoints, build the boards."""
    parameters = fill_parameters(policy)
    started_s, rows = time.perf_counter(), 0
    for first_id in range(1, partners + 1, FILL_CHUNK_PARTNERS):
        last_id = min(partners, first_id + FILL_CHUNK_PARTNERS - 1)
        with conns.admin.begin() as conn:
            rows += fill_chunk(conn, first_id, last_id, parameters)
        took_s = time.perf_counter() - started_s
        say(f"  load: {last_id:,}/{partners:,} partners, {rows:,} rows, {rows / took_s:,.0f} rows/s, "
            f"{took_s:.1f} s")
    loaded_s = time.perf_counter() - started_s
    with conns.admin.begin() as conn:
        # The history counts as reconciled: the day's reconcile checks the day's rows.
        last_ledger_id = conn.execute(text("SELECT COALESCE(MAX(id), 0) FROM xp_ledger")).scalar_one()
        save_checkpoint(conn, reconcile.JOB, last_ledger_id, datetime.combine(DAY, clock_time(), UTC))
    vacuum_s = vacuum_analyze(conns.admin)
    say(f"  VACUUM ANALYZE: {vacuum_s:.1f} s")
    return Load(partners, rows, loaded_s, vacuum_s)


def vacuum_analyze(admin: Engine) -> float:
    """What autovacuum would have done to a database that had lived: visibility maps set, statistics read."""
    started_s = time.perf_counter()
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("VACUUM ANALYZE"))
    return time.perf_counter() - started_s


# -- sizes -------------------------------------------------------------------------

# A partitioned table has no storage of its own: its size is its partitions'.
_TABLE_BYTES = text("""
    SELECT c.relname,
           CASE WHEN c.relkind = 'p'
                THEN (SELECT COALESCE(SUM(pg_total_relation_size(t.relid)), 0)
                      FROM pg_partition_tree(c.oid) AS t WHERE t.isleaf)
                ELSE pg_total_relation_size(c.oid) END AS bytes
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition
    ORDER BY c.relname
""")


@dataclass(frozen=True)
class TableSize:
    rows: int
    bytes: int


def table_sizes(admin: Engine) -> dict[str, TableSize]:
    with admin.connect() as conn:
        sizes = {}
        for name, size_bytes in conn.execute(_TABLE_BYTES).all():
            rows = conn.execute(text(f'SELECT COUNT(*) FROM "{name}"')).scalar_one()
            sizes[name] = TableSize(rows, int(size_bytes))
    return sizes


def database_bytes(admin: Engine) -> int:
    with admin.connect() as conn:
        return conn.execute(text("SELECT pg_database_size(current_database())")).scalar_one()


# -- the wave ----------------------------------------------------------------------

# Exactly WAVE_PERCENT of every profile: id * 761 % 1000 takes ten values,
# 100 apart, across the ids sharing id % 100 (which decides the profile).
_WAVE = text("SELECT id, timezone FROM partner WHERE (id * 761) % 1000 < :per_mille ORDER BY id")

Item = tuple[datetime, int]     # (occurred_at, partner id)


def waking_instant(partner_id: int, zone: str, day: date) -> datetime:
    """A minute of the partner's waking hours of `day`, in their zone, as a UTC instant."""
    local = datetime.combine(day, WAKING_START, ZoneInfo(zone))
    return (local + timedelta(minutes=(partner_id * 29) % WAKING_MINUTES)).astimezone(UTC)


def wave_items(admin: Engine) -> list[Item]:
    """The day's check-ins, one per partner who checks in, in the order they happen."""
    with admin.connect() as conn:
        rows = conn.execute(_WAVE, {"per_mille": WAVE_PERCENT * 10}).all()
    return sorted((waking_instant(partner_id, zone, DAY), partner_id) for partner_id, zone in rows)


class Wave:
    """The day's check-ins in batches, handed out in time order to whoever applies them next."""

    def __init__(self, items: list[Item], batch_size: int):
        self.batches = [items[start:start + batch_size] for start in range(0, len(items), batch_size)]
        self.checkins = len(items)
        self.taken = 0
        self._lock = threading.Lock()

    def next_batch(self) -> list[Item] | None:
        with self._lock:
            if self.taken == len(self.batches):
                return None
            self.taken += 1
            return self.batches[self.taken - 1]


@dataclass(frozen=True)
class Applied:
    batch: BatchResult
    now: datetime
    took_s: float
    retries: int


def apply_batch(worker: Engine, items: list[Item], current: Settings, *, retry: bool = False) -> Applied:
    """One batch through the `rewards.checkin.batch` job's body, in one transaction, as of its last check-in.

    With `retry`, a transient failure (a lock timeout behind a migration) is
    tried again with the job's own backoff, as the worker would; the time
    returned runs from the first attempt to the commit.
    """
    job = CheckinBatchJob(checkins=[{"partner_id": partner_id, "occurred_at": at.isoformat()}
                                    for at, partner_id in items])
    now = items[-1][0]
    started_s, retries = time.perf_counter(), 0
    while True:
        try:
            with worker.begin() as conn:
                outcome = apply_checkin_batch(conn, job, current.policy, now=now, job_id=None,
                                              future_tolerance=timedelta(seconds=current.future_tolerance_s))
            return Applied(outcome.details, now, time.perf_counter() - started_s, retries)
        except Exception as error:
            if not (retry and db.is_transient(error)):
                raise
            time.sleep(backoff_s(retries, current.retry_backoff_s_max))
            retries += 1


# -- maintenance as beat runs it -----------------------------------------------------

@dataclass
class Tick:
    """One beat tick of a job: runs until it reported it had caught up."""

    now: datetime
    # A tick after a batch of the wave, rather than at one of the day's hours.
    during_wave: bool = False
    runs: int = 0
    batches: int = 0
    took_s: float = 0.0
    examined: int = 0
    changed: int = 0
    # Work the job's own probe still found when a run reported it had none left.
    left_when_done: int = 0


@dataclass
class Job:
    """A maintenance job as beat runs it: one run every `every_s`, each of at most `max_batches` batches."""

    name: str
    every_s: int
    max_batches: int
    run: Callable[[datetime], Summary]
    # What is still due as of `now`, counted independently of the job; None: no probe.
    left: Callable[[datetime], int] | None = None
    ticks: list[Tick] = field(default_factory=list)

    def catch_up(self, now: datetime, *, during_wave: bool = False) -> Tick:
        """Run as of `now` until a run reports no `more` (and the probe agrees)."""
        tick = Tick(now, during_wave)
        while tick.runs < RUNS_MAX:
            started_s = time.perf_counter()
            summary = self.run(now)
            tick.took_s += time.perf_counter() - started_s
            if summary.skipped:
                raise RuntimeError(f"{self.name} skipped a run ({summary.skipped}): nothing else runs it here")
            tick.runs += 1
            tick.batches += summary.batches
            tick.examined += summary.examined
            tick.changed += summary.changed
            if not summary.more:
                left = self.left(now) if self.left else 0
                tick.left_when_done = max(tick.left_when_done, left)
                if not left:
                    break
        else:
            raise RuntimeError(f"{self.name} had not caught up after {RUNS_MAX:,} runs as of {now.isoformat()}")
        self.ticks.append(tick)
        return tick

    @property
    def busiest(self) -> Tick:
        return max(self.ticks, key=lambda tick: tick.took_s)

    def runs_needed(self, ticks: list[Tick], factor: float = 1.0) -> int:
        """Runs the largest of these ticks takes with `factor` times its work."""
        return max(1, -(-round(max(tick.batches for tick in ticks) * factor) // self.max_batches))

    def keeps_up(self, ticks: list[Tick], factor: float = 1.0) -> bool:
        """Each tick's runs, back to back (a run with `more` sends the next at once), fit the interval."""
        return max(tick.took_s for tick in ticks) * factor <= self.every_s


_DUE_EVENTS = text("SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= :now")
_STALE_TASKS = text("SELECT COUNT(*) FROM partner_task WHERE status = 'STARTED' AND started_at < :before")


def _count(engine: Engine, query, **params) -> int:
    with engine.connect() as conn:
        return conn.execute(query, params).scalar_one()


@dataclass
class Beat:
    """Every maintenance job with its interval, run as the worker's task shells run them."""

    jobs: dict[str, Job]
    sink: sinks.QueueSink
    risk_hour: int

    @classmethod
    def of(cls, conns: Connections, current: Settings, events_url: str) -> Beat:
        limits = current.maintenance
        sink = sinks.QueueSink(events_url)
        relay_limits = relay_outbox.Limits(
            batch_size=limits.relay_batch_size, budget_s=limits.relay_budget_s,
            backoff_s_max=limits.relay_backoff_s_max, retention_days=limits.outbox_retention_days,
            max_batches=limits.max_batches)
        worker, lag_s, batch_size, batches_max = (conns.worker, update_leaderboards.lag_s(current),
                                                  limits.batch_size, limits.max_batches)
        jobs = [
            Job("expire_streaks", limits.expire_streaks_every_s, batches_max,
                lambda now: expire_streaks.run(worker, now, batch_size, batches_max)),
            Job("streak_risk", limits.streak_risk_every_s, batches_max,
                lambda now: streak_risk.run(worker, now, batch_size, limits.streak_risk_hour, batches_max)),
            Job("sweep_stale_tasks", limits.sweep_stale_tasks_every_s, batches_max,
                lambda now: sweep_stale_tasks.run(worker, now, batch_size, limits.stale_task_days, batches_max),
                left=lambda now: _count(worker, _STALE_TASKS,
                                        before=now - timedelta(days=limits.stale_task_days))),
            Job("relay_outbox", limits.relay_outbox_every_s, batches_max,
                lambda now: relay_outbox.run(worker, now, sink, relay_limits, retention_engine=conns.retention),
                left=lambda now: _count(worker, _DUE_EVENTS, now=now)),
            Job("update_leaderboards", limits.update_leaderboards_every_s, batches_max,
                lambda now: update_leaderboards.run(worker, conns.store, now, batch_size=batch_size, lag_s=lag_s,
                                                    max_batches=batches_max)),
            Job("reconcile", limits.reconcile_every_s, batches_max,
                lambda now: reconcile.run(worker, now, batch_size, lag_s=limits.reconcile_lag_s,
                                          max_batches=batches_max)),
        ]
        return cls({job.name: job for job in jobs}, sink, limits.streak_risk_hour)

    def tick(self, names: tuple[str, ...], now: datetime, *, during_wave: bool = False) -> None:
        for name in names:
            self.jobs[name].catch_up(now, during_wave=during_wave)

    def close(self) -> None:
        self.sink.close()


FIVE_SECOND_JOBS = ("relay_outbox", "update_leaderboards")
HOURLY_JOBS = ("expire_streaks", "streak_risk", "sweep_stale_tasks")


def day_hours(risk_hour: int) -> list[datetime]:
    """Beat's hourly ticks over the simulated day: from its first midnight (in the zone furthest east) on.

    They stop before the evening of the next day begins anywhere: past it,
    every partner there would be at risk for a day no one checked in on. So
    each zone has its evening of the day, and all but the two furthest west
    their next midnight (when the streaks of the day's absentees are lost).
    """
    zones = [ZoneInfo(zone) for zone in ZONES]
    first = min(datetime.combine(DAY, clock_time(), zone) for zone in zones).astimezone(UTC)
    next_evening = min(datetime.combine(DAY + timedelta(days=1), clock_time(risk_hour), zone)
                       for zone in zones).astimezone(UTC)
    tick = first.replace(minute=15)
    hours = []
    while tick < next_evening:
        hours.append(tick)
        tick += timedelta(hours=1)
    return hours


# -- migrations under load ---------------------------------------------------------

@dataclass(frozen=True)
class Step:
    revision: str
    started_s: float
    ended_s: float

    @property
    def took_s(self) -> float:
        return self.ended_s - self.started_s


class Writer(threading.Thread):
    """Applies the wave's batches one after another, recording when each began and how long it took."""

    def __init__(self, worker: Engine, wave: Wave, current: Settings, batches_max: int):
        super().__init__(name="scale-soak-writer", daemon=True)
        self.worker, self.wave, self.current, self.batches_max = worker, wave, current, batches_max
        self.applied: list[tuple[float, Applied]] = []
        # When the writer ran out of its share of the wave, if it did.
        self.ran_out_s: float | None = None
        self.error: BaseException | None = None
        self._halt = threading.Event()

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                items = self.wave.next_batch() if len(self.applied) < self.batches_max else None
                if items is None:
                    self.ran_out_s = time.perf_counter()
                    return
                started_s = time.perf_counter()
                self.applied.append((started_s, apply_batch(self.worker, items, self.current, retry=True)))
        except BaseException as error:  # noqa: BLE001 - reported by the thread that waits for it
            self.error = error

    def wait_for(self, batches: int) -> None:
        while len(self.applied) < batches and self.is_alive():
            time.sleep(0.01)

    def halt(self) -> None:
        self._halt.set()
        self.join()
        if self.error is not None:
            raise RuntimeError(f"the writer failed after {len(self.applied)} batches: {self.error}") from self.error


@dataclass(frozen=True)
class MigrationRun:
    steps: list[Step]
    batches: list[tuple[float, Applied]]
    writer_ran_out_s: float | None = None

    @property
    def unwritten_s(self) -> float:
        """How long the migrations went on after the writer had run out of check-ins."""
        if self.writer_ran_out_s is None or not self.steps:
            return 0.0
        return max(0.0, self.steps[-1].ended_s - self.writer_ran_out_s)

    def during(self, step: Step) -> list[Applied]:
        return [applied for started_s, applied in self.batches
                if started_s < step.ended_s and started_s + applied.took_s > step.started_s]

    def before_first(self) -> list[Applied]:
        return [applied for started_s, applied in self.batches
                if started_s + applied.took_s <= self.steps[0].started_s]


def migrate_under_load(conns: Connections, target: Target, wave: Wave, current: Settings,
                       say: Callable[[str], None]) -> MigrationRun:
    """Upgrade to head one revision at a time while a writer applies the wave's first batches.

    The writer takes at most half of the wave, so the day still has check-ins
    of its own to measure; a migration that outlasts that half is reported.
    """
    revisions = revisions_after(target.admin_url, revision_of(conns.admin))
    if not revisions:
        return MigrationRun([], [])
    writer = Writer(conns.worker, wave, current, batches_max=len(wave.batches) // 2)
    writer.start()
    steps = []
    try:
        writer.wait_for(WRITER_MARGIN_BATCHES)
        for revision in revisions:
            started_s = time.perf_counter()
            db.upgrade(revision, target.admin_url)
            steps.append(Step(revision, started_s, time.perf_counter()))
            say(f"  migration {revision}: {steps[-1].took_s:.1f} s, writer at {len(writer.applied):,} batches")
        writer.wait_for(len(writer.applied) + WRITER_MARGIN_BATCHES)
    finally:
        writer.halt()
    return MigrationRun(steps, writer.applied, writer.ran_out_s)


# -- the day -----------------------------------------------------------------------

@dataclass
class Tally:
    """What the wave's batches did, however they were applied."""

    batches: int = 0
    applied: int = 0
    duplicate: int = 0
    rejected: int = 0
    apply_s: float = 0.0

    def add(self, applied: Applied) -> None:
        self.batches += 1
        self.applied += applied.batch.applied
        self.duplicate += applied.batch.duplicate
        self.rejected += applied.batch.rejected
        self.apply_s += applied.took_s


def drain_events(store: redis.Redis) -> int:
    """Take the relayed events off their queue, as a consumer would; how many there were."""
    pipe = store.pipeline(transaction=True)
    pipe.llen(sinks.EVENTS_QUEUE_NAME)
    pipe.delete(sinks.EVENTS_QUEUE_NAME)
    return pipe.execute()[0]


@dataclass
class Day:
    wave: Tally
    wave_s: float
    events_received: int


def run_wave(conns: Connections, wave: Wave, current: Settings, beat: Beat, tally: Tally,
             say: Callable[[str], None]) -> Day:
    """Apply the rest of the wave; after each batch, the 5-second jobs catch up as of its time."""
    started_s, shown_s, received = time.perf_counter(), time.perf_counter(), 0
    while (items := wave.next_batch()) is not None:
        applied = apply_batch(conns.worker, items, current)
        tally.add(applied)
        beat.tick(FIVE_SECOND_JOBS, applied.now, during_wave=True)
        received += drain_events(conns.store)
        if time.perf_counter() - shown_s >= 15 or wave.taken == len(wave.batches):
            shown_s = time.perf_counter()
            done = sum(len(batch) for batch in wave.batches[:wave.taken])
            say(f"  wave: {done:,}/{wave.checkins:,} check-ins, {tally.applied / tally.apply_s:,.0f}/s applied, "
                f"{shown_s - started_s:.0f} s with the 5-second jobs")
    return Day(tally, time.perf_counter() - started_s, received)


def run_maintenance(conns: Connections, beat: Beat, day: Day, say: Callable[[str], None]) -> datetime:
    """Beat's hourly ticks over the day, the 5-second jobs after each, then the daily reconcile."""
    hours = day_hours(beat.risk_hour)
    started_s = shown_s = time.perf_counter()
    for number, hour in enumerate(hours, start=1):
        beat.tick(HOURLY_JOBS + FIVE_SECOND_JOBS, hour)
        day.events_received += drain_events(conns.store)
        if time.perf_counter() - shown_s >= 15 or number == len(hours):
            shown_s = time.perf_counter()
            say(f"  hourly jobs: {number}/{len(hours)} ticks, at {hour:%Y-%m-%d %H:%M} UTC, "
                f"{shown_s - started_s:.0f} s")
    end = hours[-1] + timedelta(hours=1)
    beat.tick(("reconcile",), end)
    say(f"  reconcile (daily): {beat.jobs['reconcile'].ticks[-1].took_s:.1f} s")
    return end


@dataclass(frozen=True)
class FullReconcile:
    runs: int
    took_s: float
    partners: int
    mismatches: int
    # Whether the last run reported the lap finished (no `more`).
    finished: bool


def full_reconcile(worker: Engine, now: datetime, current: Settings, partners: int) -> FullReconcile:
    """A full reconcile as the worker runs it (limited runs, each carrying on) until every partner was checked.

    A limited run that stops starts its next lap where it stopped, so with
    more partners than one run checks, no run ever finishes a lap and `more`
    stays set: the runs are counted until they have covered `partners`.
    """
    limits = current.maintenance
    runs, took_s, checked, mismatches = 0, 0.0, 0, 0
    while True:
        started_s = time.perf_counter()
        summary = reconcile.run(worker, now, limits.batch_size, full=True, lag_s=limits.reconcile_lag_s,
                                max_batches=limits.max_batches)
        took_s += time.perf_counter() - started_s
        runs += 1
        checked += summary.examined
        mismatches += summary.details.get("mismatches", 0)
        if not summary.more or checked >= partners:
            return FullReconcile(runs, took_s, checked, mismatches, finished=not summary.more)


@dataclass(frozen=True)
class BoardSize:
    key: str
    members: int
    bytes: int


@dataclass(frozen=True)
class Boards:
    drift: list[update_leaderboards.Drift]
    rebuild_s: float
    sizes: list[BoardSize]

    @property
    def members(self) -> int:
        return sum(size.members for size in self.sizes)

    @property
    def bytes(self) -> int:
        return sum(size.bytes for size in self.sizes)


def measure_boards(conns: Connections, now: datetime, current: Settings) -> Boards:
    """Do the caught-up boards agree with PostgreSQL; how long a rebuild takes; what the boards hold."""
    lag_s = update_leaderboards.lag_s(current)
    drift = update_leaderboards.drift(conns.worker, conns.store, now, batch_size=current.maintenance.batch_size,
                                      lag_s=lag_s)
    started_s = time.perf_counter()
    update_leaderboards.rebuild(conns.worker, conns.store, now, lag_s=lag_s)
    rebuild_s = time.perf_counter() - started_s
    sizes = [BoardSize(board.key, conns.store.zcard(board.key),
                       conns.store.memory_usage(board.key, samples=0) or 0)
             for board in update_leaderboards.boards_kept(now)]
    return Boards(drift, rebuild_s, sizes)


_CHECKIN_AUDITS = text("""
    SELECT (SELECT COUNT(*) FROM checkin) AS checkins,
           (SELECT COUNT(*) FROM audit_event WHERE event_type = 'checkin') AS audited
""")


def ledger_problems(admin: Engine) -> list[str]:
    """The suite's invariant checks (tests/support/invariants.py), and one audit row per check-in."""
    from tests.support.invariants import violations

    with admin.connect() as conn:
        found = [f"{name}: {rows}" for name, rows in violations(conn).items()]
        counts = conn.execute(_CHECKIN_AUDITS).one()
    if counts.checkins != counts.audited:
        found.append(f"{counts.checkins:,} check-ins but {counts.audited:,} check-in audit rows")
    return found


# -- Redis bytes per stored result (benchmarks/result_size) ------------------------

RESULT_SIZE_FLAG = "--result-sizes"


def result_sizes(target: Target, jobs: int) -> list[result_size.Size]:
    """benchmarks/result_size's figures for celeryconfig's result_extended, on a scratch database.

    It empties its database and Redis, so it runs last, in a process of its
    own whose environment points it there.
    """
    scratch_url = make_url(target.admin_url).set(database=f"{target.database}_results").render_as_string(
        hide_password=False)
    recreate_database(scratch_url)
    try:
        db.upgrade("head", scratch_url)
        env = {**os.environ, "REWARDS_DATABASE_URL": scratch_url, "CELERY_BROKER_URL": target.redis_url,
               "CELERY_RESULT_BACKEND": target.redis_url, "RESULT_SIZE_JOBS": str(jobs)}
        done = subprocess.run([sys.executable, "-m", "benchmarks.scale_soak", RESULT_SIZE_FLAG], env=env,
                              capture_output=True, text=True, timeout=1_800)
        if done.returncode:
            raise RuntimeError(f"the result-size run failed ({done.returncode}): {done.stderr[-2_000:]}")
        return [result_size.Size(**json.loads(line)) for line in done.stdout.splitlines() if line.startswith("{")]
    finally:
        drop_database(scratch_url)


def print_result_sizes() -> None:
    """The child's side of `result_sizes`: one JSON line per kind of result."""
    for size in result_size.sizes(celeryconfig.result_extended):
        print(json.dumps(asdict(size)))


# -- one whole soak ----------------------------------------------------------------

@dataclass
class Run:
    partners: int
    load: Load
    first_rebuild_s: float
    migration: MigrationRun | None
    loaded: dict[str, TableSize]
    before_wave: dict[str, TableSize]
    after_wave: dict[str, TableSize]
    after_day: dict[str, TableSize]
    database_bytes: tuple[int, int]       # before and after the wave
    expected_checkins: int
    writer: Tally
    day: Day
    beat: Beat
    full: FullReconcile
    boards: Boards
    problems: list[str]

    @property
    def checkins_applied(self) -> int:
        return self.writer.applied + self.day.wave.applied


def prepare_database(target: Target, migrate_from: str | None) -> None:
    """Recreate the database at `migrate_from`; without one, it must already be at head (`rewards db upgrade`)."""
    if migrate_from is None:
        return
    # The worker's role has its grants from 0009 on; the writer connects as it.
    if migrate_from not in revisions_after(target.admin_url, "0008"):
        raise SystemExit(f"SCALE_MIGRATE_FROM={migrate_from}: give revision 0009 or a later one")
    recreate_database(target.admin_url)
    db.upgrade(migrate_from, target.admin_url)


def run_soak(target: Target, partners: int, current: Settings, say: Callable[[str], None], *,
             migrate_from: str | None = None, batch_size: int | None = None) -> Run:
    """Load, migrate (when asked), run the day and measure it; every figure the report prints."""
    prepare_database(target, migrate_from)
    conns = Connections.open(target, current)
    try:
        ensure_login_roles(conns.admin, target)
        if migrate_from is None:
            head = head_revision(target.admin_url)
            if revision_of(conns.admin) != head:
                raise SystemExit(f"{target.database} is not at head ({head}): run `rewards db upgrade` as its owner")
            empty_tables(conns.admin)
        conns.store.flushdb()
        say(f"load at revision {revision_of(conns.admin)}:")
        loaded = load(conns, partners, current.policy, say)
        return _run_day(conns, target, current, loaded, say, migrate=migrate_from is not None,
                        batch_size=batch_size or current.batch_max)
    finally:
        conns.close()


def _run_day(conns: Connections, target: Target, current: Settings, loaded: Load, say: Callable[[str], None],
             *, migrate: bool, batch_size: int) -> Run:
    items = wave_items(conns.admin)
    wave = Wave(items, batch_size)
    started_s = time.perf_counter()
    update_leaderboards.rebuild(conns.worker, conns.store, items[0][0], lag_s=update_leaderboards.lag_s(current))
    first_rebuild_s = time.perf_counter() - started_s
    sizes_loaded = table_sizes(conns.admin)
    migration, writer = None, Tally()
    if migrate:
        role = make_url(target.worker_url).username
        say(f"migrations to head while a writer applies the day's first check-ins, as {role}:")
        migration = migrate_under_load(conns, target, wave, current, say)
        for _, applied in migration.batches:
            writer.add(applied)
    before_wave, bytes_before = table_sizes(conns.admin), database_bytes(conns.admin)
    beat = Beat.of(conns, current, target.redis_url)
    try:
        say(f"the day's check-ins, {wave.checkins:,} in batches of {batch_size}:")
        day = run_wave(conns, wave, current, beat, Tally(), say)
        after_wave, bytes_after = table_sizes(conns.admin), database_bytes(conns.admin)
        say("maintenance at the day's times:")
        end = run_maintenance(conns, beat, day, say)
    finally:
        beat.close()
    after_day = table_sizes(conns.admin)
    full = full_reconcile(conns.worker, end, current, loaded.partners)
    say(f"  full reconcile: {full.took_s:.1f} s")
    boards = measure_boards(conns, end, current)
    say(f"  leaderboards compared with PostgreSQL and rebuilt: {boards.rebuild_s:.1f} s to rebuild")
    run = Run(loaded.partners, loaded, first_rebuild_s, migration, sizes_loaded, before_wave, after_wave,
              after_day, (bytes_before, bytes_after), wave.checkins, writer, day, beat, full, boards, [])
    run.problems = correctness_problems(conns.admin, run)
    say("  invariants checked")
    return run


def correctness_problems(admin: Engine, run: Run) -> list[str]:
    """What would make the soak's figures untrustworthy: a lost or doubled check-in, a mismatch, drift."""
    found = ledger_problems(admin)
    wave = run.day.wave
    if run.checkins_applied != run.expected_checkins or wave.duplicate or wave.rejected:
        found.append(f"the wave applied {run.checkins_applied:,} of {run.expected_checkins:,} check-ins "
                     f"({wave.duplicate:,} duplicates, {wave.rejected:,} rejected)")
    if run.full.mismatches:
        found.append(f"a full reconcile found {run.full.mismatches:,} mismatches")
    drifted = [drift for drift in run.boards.drift if not drift.clean]
    found.extend(f"board {drift.board.key}: {drift.missing} missing, {drift.wrong} wrong, {drift.extra} extra "
                 f"({'; '.join(drift.examples[:3])})" for drift in drifted)
    delivered = sum(tick.changed for tick in run.beat.jobs["relay_outbox"].ticks)
    if delivered != run.day.events_received:
        found.append(f"the relay delivered {delivered:,} events, the queue received {run.day.events_received:,}")
    return found


# -- the report --------------------------------------------------------------------

def _mib(size_bytes: float) -> str:
    return f"{size_bytes / MIB:,.1f}"


def _gib(size_bytes: float) -> str:
    return f"{size_bytes / GIB:,.2f}"


def _seconds(took_s: float) -> str:
    if took_s < 1:
        return f"{took_s:.3f}"
    return f"{took_s:,.2f}" if took_s < 100 else f"{took_s:,.0f}"


def _yes(fits: bool) -> str:
    return "yes" if fits else "NO"


def print_migrations(migration: MigrationRun) -> None:
    if not migration.steps:
        print("\nmigrations: the database was already at head")
        return
    rows = []
    for step in migration.steps:
        during = migration.during(step)
        rows.append([step.revision, _seconds(step.took_s), len(during),
                     round(max((a.took_s for a in during), default=0) * 1000),
                     sum(a.retries for a in during)])
    print(render(["revision", "took s", "writer batches meanwhile", "slowest batch ms", "retries"], rows,
                 title="\nMigrations to head under a writer (one transaction per batch of check-ins)"))
    before = [a.took_s * 1000 for a in migration.before_first()]
    every = [applied.took_s * 1000 for _, applied in migration.batches]
    print(f"writer: {len(every):,} batches, median {statistics.median(before or every):,.0f} ms before the first "
          f"migration, slowest {max(every):,.0f} ms (its longest stall)")
    if migration.unwritten_s:
        print(f"the writer ran out of its half of the wave {migration.unwritten_s:,.1f} s before the migrations "
              f"ended: what they did after that ran with no writer")


def print_tables(run: Run) -> None:
    rows = [[name, run.loaded[name].rows, run.after_day[name].rows, _mib(run.loaded[name].bytes),
             _mib(run.after_day[name].bytes)] for name in run.after_day if name in run.loaded]
    total = [sum(size.bytes for size in sizes.values()) for sizes in (run.loaded, run.after_day)]
    rows.append(["all tables", None, None, _mib(total[0]), _mib(total[1])])
    print(render(["table", "rows loaded", "rows after the day", "MiB loaded", "MiB after the day"], rows,
                 title="\nRows and bytes per table (pg_total_relation_size, partitions summed)"))


def wave_growth(run: Run) -> tuple[list[list], int, int]:
    """Per table: rows and bytes the wave added; also all tables' bytes and those but partner's."""
    checkins = run.day.wave.applied
    rows, all_bytes, kept_bytes = [], 0, 0
    for name, after in run.after_wave.items():
        before = run.before_wave.get(name, TableSize(0, 0))
        grown_bytes = after.bytes - before.bytes
        if grown_bytes or after.rows != before.rows:
            rows.append([name, after.rows - before.rows, grown_bytes, round(grown_bytes / checkins)])
        all_bytes += grown_bytes
        kept_bytes += grown_bytes if name != "partner" else 0
    return rows, all_bytes, kept_bytes


def print_growth(run: Run) -> None:
    checkins = run.day.wave.applied
    rows, all_bytes, kept_bytes = wave_growth(run)
    database_grown = run.database_bytes[1] - run.database_bytes[0]
    rows.append(["all tables", None, all_bytes, round(all_bytes / checkins)])
    rows.append(["database (pg_database_size)", None, database_grown, round(database_grown / checkins)])
    print(render(["table", "rows added", "bytes added", "bytes per check-in"], rows,
                 title=f"\nGrowth over the wave: {checkins:,} check-ins applied (and the 5-second jobs after "
                       f"each batch)"))
    print(f"without partner (its growth is the updated rows' old versions, which VACUUM hands back): "
          f"{kept_bytes / checkins:,.0f} bytes per check-in")


def print_jobs(run: Run) -> None:
    rows = []
    for job in run.beat.jobs.values():
        ticks = job.ticks
        rows.append([job.name, job.every_s, len(ticks), sum(t.runs for t in ticks), max(t.runs for t in ticks),
                     sum(t.examined for t in ticks), sum(t.changed for t in ticks),
                     _seconds(sum(t.took_s for t in ticks)), _seconds(job.busiest.took_s), _yes(job.keeps_up(ticks))])
    print(render(["job", "every s", "ticks", "runs", "most runs a tick", "examined", "changed", "total s",
                  "busiest tick s", "keeps up"], rows,
                 title="\nMaintenance over the day: at each tick a job runs until it reports it caught up"))
    print("keeps up: a tick's runs, back to back (a scheduled run that stops at its batch limit sends the next "
          "at once), fit the interval")
    for job in run.beat.jobs.values():
        early = [tick for tick in job.ticks if tick.left_when_done]
        if early:
            worst = max(early, key=lambda tick: tick.left_when_done)
            print(f"{job.name}: {len(early)} tick(s) where a run reported nothing more while work was due "
                  f"(most: {worst.left_when_done:,} at {worst.now:%Y-%m-%d %H:%M:%S}); it ran on until none was")
    print("busiest tick at: " + ", ".join(f"{job.name} {job.busiest.now:%m-%d %H:%M}"
                                          for job in run.beat.jobs.values()))


def print_checks(run: Run) -> None:
    full, boards = run.full, run.boards
    print(f"\nfull reconcile: {full.partners:,} partners in {full.runs} runs, {_seconds(full.took_s)} s, "
          f"{full.mismatches:,} mismatches")
    if not full.finished:
        print(f"  its last run still reported `more`: a limited full run starts its lap where the last one "
              f"stopped, so it finishes one only when {run.partners:,} partners fit in a single run")
    clean = all(drift.clean for drift in boards.drift)
    print(f"leaderboards: {'agree' if clean else 'DISAGREE'} with PostgreSQL after the day's catch-ups; "
          f"rebuild of {boards.members:,} members {_seconds(boards.rebuild_s)} s "
          f"(after the load: {_seconds(run.first_rebuild_s)} s)")
    print(f"events: {run.day.events_received:,} relayed to the rewards.events queue")
    for problem in run.problems:
        print(f"FAILED {problem}")
    if not run.problems:
        print("checks: every check-in applied once, invariants hold (tests/support/invariants.py), one audit row "
              "per check-in, 0 mismatches")


def print_redis(boards: Boards, results: list[result_size.Size]) -> None:
    rows = [[size.key, size.members, size.bytes, round(size.bytes / max(size.members, 1))] for size in boards.sizes]
    rows.append(["all boards", boards.members, boards.bytes, round(boards.bytes / max(boards.members, 1))])
    print(render(["board", "members", "bytes (MEMORY USAGE)", "bytes per member"], rows,
                 title="\nRedis: leaderboards"))
    if results:
        rows = [[size.kind, round(size.json_b), round(size.memory_usage_b), round(size.used_memory_b),
                 f"{max(size.memory_usage_b, size.used_memory_b) * 1000 / 1024:,.0f}"] for size in results]
        print(render(["result", "JSON B", "MEMORY USAGE B", "used_memory B", "KiB per 1,000"], rows,
                     title=f"\nRedis: stored results (benchmarks/result_size, result_extended "
                           f"{'on' if celeryconfig.result_extended else 'off'})"))


def _scaled(quantity: str, measured: float, factor: float, shown=_seconds) -> list:
    return [quantity, shown(measured), shown(measured * factor), "—", "—", "—"]


def _job_row(quantity: str, job: Job, ticks: list[Tick], factor: float) -> list:
    took_s = max(tick.took_s for tick in ticks)
    return [quantity, _seconds(took_s), _seconds(took_s * factor), job.runs_needed(ticks, factor),
            f"{job.every_s:,}", _yes(job.keeps_up(ticks, factor))]


def projection_rows(run: Run, results: list[result_size.Size]) -> list[list]:
    """Each measured figure times TEN_MILLION / partners: the work a job has due grows with the partners."""
    factor = TEN_MILLION / run.partners
    checkins, day_checkins = run.day.wave.applied, run.expected_checkins
    _, all_bytes, kept_bytes = wave_growth(run)
    rows = [["check-ins in the day's wave", f"{day_checkins:,}", f"{round(day_checkins * factor):,}", "—", "—", "—"],
            _scaled("PostgreSQL growth a day of check-ins, GiB", all_bytes / checkins * day_checkins, factor, _gib),
            _scaled("  the same without partner's old row versions, GiB", kept_bytes / checkins * day_checkins,
                    factor, _gib),
            _scaled(f"the load ({HISTORY_DAYS} days of history), GiB", sum(size.bytes for size in run.loaded.values()),
                    factor, _gib)]
    for job in run.beat.jobs.values():
        if job.name in FIVE_SECOND_JOBS:
            wave_s = sum(tick.took_s for tick in job.ticks if tick.during_wave)
            # The check-ins one interval brings on average, and what the wave's ticks spent on as many.
            interval_s = wave_s / checkins * day_checkins * job.every_s / 86_400
            fits = interval_s * factor <= job.every_s
            rows.append([f"{job.name}: {job.every_s} s of check-ins, s", _seconds(interval_s),
                         _seconds(interval_s * factor), 1, f"{job.every_s:,}", _yes(fits)])
        hours = [tick for tick in job.ticks if not tick.during_wave]
        rows.append(_job_row(f"{job.name}: busiest tick, s", job, hours, factor))
    rows.append(_scaled("full reconcile, s", run.full.took_s, factor))
    rows.append(_scaled("leaderboard rebuild, s", run.boards.rebuild_s, factor))
    rows.append(_scaled("Redis leaderboards, MiB", run.boards.bytes, factor, _mib))
    for size in results[:1]:   # a check-in's: one per job sent alone
        rows.append([f"Redis results held, {result_size.JOBS_PER_DAY:,} check-ins a day one per job, GiB",
                     "—", f"{result_size.held_gib(max(size.memory_usage_b, size.used_memory_b), 1):.2f}",
                     "—", "—", "—"])
    return rows


def print_projection(run: Run, results: list[result_size.Size]) -> None:
    print(render(["quantity", f"at {run.partners:,}", f"at {TEN_MILLION:,}", "runs a tick", "every s", "keeps up"],
                 projection_rows(run, results),
                 title=f"\nLinear arithmetic to {TEN_MILLION:,} partners (x{TEN_MILLION / run.partners:,.1f}: "
                       f"a job's work and time grow with the partners)"))


def print_report(run: Run, results: list[result_size.Size]) -> None:
    load = run.load
    print(f"\nload: {load.partners:,} partners, {load.rows:,} rows in {_seconds(load.took_s)} s "
          f"({load.rows / load.took_s:,.0f} rows/s), VACUUM ANALYZE {_seconds(load.vacuum_s)} s")
    if run.migration is not None:
        print_migrations(run.migration)
    print(f"wave: {run.checkins_applied:,} of {run.expected_checkins:,} check-ins applied "
          f"({run.writer.applied:,} by the writer during the migrations), "
          f"{run.day.wave.applied / run.day.wave.apply_s:,.0f}/s in batches, {_seconds(run.day.wave_s)} s with "
          f"the 5-second jobs")
    print_tables(run)
    print_growth(run)
    print_jobs(run)
    print_checks(run)
    print_redis(run.boards, results)
    print_projection(run, results)


def server_settings(admin_url: str) -> str:
    engine = create_engine(admin_url)
    with engine.connect() as conn:
        values = [f"{name} {conn.execute(text(f'SHOW {name}')).scalar_one()}"
                  for name in ("server_version", "shared_buffers", "autovacuum", "synchronous_commit")]
    engine.dispose()
    return ", ".join(values)


def main() -> int:
    if sys.argv[1:2] == [RESULT_SIZE_FLAG]:
        print_result_sizes()
        return 0
    current = settings_module.get()
    target = Target.from_environment(current)
    partners = int(os.environ.get("SCALE_PARTNERS", "1000000"))
    migrate_from = os.environ.get("SCALE_MIGRATE_FROM", "").strip() or None
    result_jobs = int(os.environ.get("SCALE_RESULT_JOBS", "1000"))
    started_s = time.perf_counter()

    def say(line: str) -> None:
        print(f"[{time.perf_counter() - started_s:6.0f} s] {line}", flush=True)

    limits = current.maintenance
    say(f"Scale soak: {partners:,} partners in {len(ZONES)} time zones, the day {DAY} in each, "
        f"{os.cpu_count()} cores; database {target.database} ({server_settings(target.admin_url)}); "
        f"maintenance {limits.batch_size} x {limits.max_batches} a run")
    run = run_soak(target, partners, current, say, migrate_from=migrate_from)
    results = []
    if result_jobs:
        say(f"stored results: benchmarks/result_size, {result_jobs:,} jobs a kind…")
        results = result_sizes(target, result_jobs)
    print_report(run, results)
    print(f"\nwhole run: {time.perf_counter() - started_s:,.0f} s")
    return 1 if run.problems else 0


if __name__ == "__main__":
    sys.exit(main())
