"""What the servers hold, read when Prometheus scrapes beat: one reading per deployment.

Queue depths, dead letters waiting, unresolved job failures, the outbox
backlog and its oldest event, each maintenance job's last run (and reconcile's
mismatches), and how far the leaderboards trail the ledger. The sources are
read at once, each within READ_DEADLINE_S; one that does not answer is
reported by `rewards_state_source_up{source}` = 0 and leaves only its own
series out, so a scrape never fails, nor times out, because Redis is down.

`read_state()` is also what `rewards status` prints.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kombu import Connection as BrokerConnection
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import Engine, bindparam, func, select

from rewards import contract, db, deadletters, leaderboards, redis_client
from rewards import settings as settings_module
from rewards.logs import log_event
from rewards.models import job_failure, maintenance_run, outbox, utcnow, xp_ledger
from rewards.transport import folder_counts
from schedules import beat, update_leaderboards

logger = logging.getLogger("rewards.metrics")

SOURCE_DATABASE, SOURCE_BROKER, SOURCE_REDIS = "database", "broker", "redis"
TIMEOUT_S = 2.0
# The whole reading ends within this, inside Prometheus's default 10 s scrape timeout.
READ_DEADLINE_S = 8.0


@dataclass
class MaintenanceRun:
    job: str
    interval_s: int
    last_run_at: datetime | None = None
    skipped: str | None = None
    done_at: datetime | None = None
    examined: int = 0
    changed: int = 0
    more: bool = False
    took_ms: float = 0.0
    details: dict[str, int] = field(default_factory=dict)


@dataclass
class State:
    """One reading of the servers; a field left None is a source that did not answer (see `errors`)."""

    read_at: datetime
    sources: tuple[str, ...] = ()
    queue_messages: dict[str, int] | None = None
    dead_letters: int | None = None
    failures_by_reason: dict[str, int] | None = None
    outbox_pending: int | None = None
    outbox_oldest_pending_at: datetime | None = None
    maintenance: list[MaintenanceRun] | None = None
    leaderboard_mark: int | None = None
    leaderboard_lag_s: float | None = None
    leaderboard_settle_s: int | None = None
    errors: dict[str, str] = field(default_factory=dict)


def read_state(current: settings_module.Settings | None = None) -> State:
    """Every source at once, each given READ_DEADLINE_S: a scrape must end inside Prometheus's timeout."""
    current = current or settings_module.get()
    state = State(read_at=utcnow())
    readers = {SOURCE_BROKER: lambda: _read_queues(current),
               SOURCE_DATABASE: lambda: _read_database(db.get_read_engine(), current)}
    if current.dead_letter_url or current.redis_url:
        readers[SOURCE_REDIS] = lambda: _read_redis(current)
    state.sources = tuple(readers)
    pool = ThreadPoolExecutor(max_workers=len(readers), thread_name_prefix="rewards-state")
    futures = {source: pool.submit(reader) for source, reader in readers.items()}
    wait(futures.values(), timeout=READ_DEADLINE_S)
    pool.shutdown(wait=False)  # a source past its deadline is left to finish on its own
    for source, future in futures.items():
        _take(state, source, future)
    if state.leaderboard_mark is not None and SOURCE_DATABASE not in state.errors:
        _take_now(state, SOURCE_DATABASE, lambda: _leaderboard_lag(state, db.get_read_engine(), current))
    return state


def _take(state: State, source: str, future: Future) -> None:
    if not future.done():
        _unreadable(state, source, TimeoutError(f"no answer within {READ_DEADLINE_S:g} s"))
    elif future.exception() is not None:
        _unreadable(state, source, future.exception())
    else:
        for name, value in future.result().items():
            setattr(state, name, value)


def _take_now(state: State, source: str, reader: Callable[[], dict[str, Any]]) -> None:
    try:
        for name, value in reader().items():
            setattr(state, name, value)
    except Exception as error:  # noqa: BLE001 - a source that does not answer is reported, not raised
        _unreadable(state, source, error)


def _unreadable(state: State, source: str, error: BaseException) -> None:
    state.errors.setdefault(source, f"{type(error).__name__}: {error}")
    log_event(logger, logging.WARNING, "metrics.source_unreadable", source=source, error=type(error).__name__)


# -- the broker --------------------------------------------------------------------

def _read_queues(current: settings_module.Settings) -> dict[str, Any]:
    url = current.broker_url
    if url.startswith(settings_module.REDIS_SCHEMES):
        depths = _redis_queue_depths(url)
    elif url.startswith("filesystem://"):
        queued = folder_counts(Path(current.broker_folder)).queued
        depths = {queue: queued.get(queue, 0) for queue in contract.QUEUES}
    else:
        depths = _amqp_queue_depths(url)
    return {"queue_messages": depths}


def _redis_queue_depths(url: str) -> dict[str, int]:
    """LLEN of each queue's list and its priority lists (kombu keeps one per priority step)."""
    from rewards.access.redis import priority_lists

    client = redis_client.connect(url, timeout_s=TIMEOUT_S)
    try:
        pipe = client.pipeline(transaction=False)
        for queue in contract.QUEUES:
            for key in priority_lists(queue):
                pipe.llen(key)
        lengths = iter(pipe.execute())
        return {queue: sum(next(lengths) for _ in priority_lists(queue)) for queue in contract.QUEUES}
    finally:
        client.close()


def _amqp_queue_depths(url: str) -> dict[str, int]:
    """Ready messages per queue, by passive declare: exact at once, and RabbitMQ asks no permission for it."""
    depths = {}
    with BrokerConnection(url, connect_timeout=TIMEOUT_S, transport_options={"max_retries": 1}) as connection:
        channel = connection.default_channel
        for queue in (*contract.QUEUES, contract.PARKED_QUEUE):
            try:
                depths[queue] = channel.queue_declare(queue=queue, passive=True).message_count
            except connection.channel_errors:  # not declared yet (no worker has started): the channel is closed
                depths[queue] = 0
                channel = connection.channel()
    return depths


# -- PostgreSQL --------------------------------------------------------------------

_failures_by_reason = select(job_failure.c.reason, func.count()).group_by(job_failure.c.reason)
# ix_outbox_pending holds exactly the undelivered rows.
_outbox_pending = select(func.count(), func.min(outbox.c.created_at)).where(outbox.c.delivered_at.is_(None))
_maintenance_runs = select(maintenance_run)
_first_ledger_row_after = (select(xp_ledger.c.created_at).where(xp_ledger.c.id > bindparam("after"))
                           .order_by(xp_ledger.c.id).limit(1))


def _read_database(engine: Engine, current: settings_module.Settings) -> dict[str, Any]:
    with engine.connect() as conn:
        failures_by_reason = dict(conn.execute(_failures_by_reason).all())
        pending, oldest_at = conn.execute(_outbox_pending).one()
        rows = {row.job: row for row in conn.execute(_maintenance_runs)}
    return {"failures_by_reason": failures_by_reason, "outbox_pending": pending,
            "outbox_oldest_pending_at": oldest_at,
            "maintenance": [_maintenance_run(job, interval_s, rows.get(job))
                            for job, interval_s in maintenance_intervals_s(current).items()]}


def maintenance_intervals_s(current: settings_module.Settings) -> dict[str, int]:
    """Each maintenance job that runs here and how often beat sends it.

    The leaderboards' updater does nothing without REWARDS_REDIS_URL (boards
    are read from SQL then), so it is not watched either.
    """
    intervals = {entry["task"]: int(entry["schedule"]) for entry in beat.beat_schedule(current.maintenance).values()}
    if current.redis_url is None:
        del intervals[contract.MAINTENANCE_UPDATE_LEADERBOARDS]
    return intervals


def _maintenance_run(job: str, interval_s: int, row: Any) -> MaintenanceRun:
    if row is None:
        return MaintenanceRun(job, interval_s)
    return MaintenanceRun(job, interval_s, last_run_at=row.last_run_at, skipped=row.skipped, done_at=row.done_at,
                          examined=row.examined, changed=row.changed, more=row.more, took_ms=row.took_ms,
                          details=dict(row.details or {}))


def _leaderboard_lag(state: State, engine: Engine, current: settings_module.Settings) -> dict[str, Any]:
    """Age of the oldest ledger row after the boards' checkpoint; 0 when there is none.

    The updater's checkpoint waits at a gap in the ledger ids for up to
    `settle_s` (a transaction that took the missing id may still commit), so
    a lag below that is the updater being careful, not behind.
    """
    with engine.connect() as conn:
        oldest = conn.execute(_first_ledger_row_after, {"after": state.leaderboard_mark}).scalar_one_or_none()
    lag_s = 0.0 if oldest is None else max(0.0, (state.read_at - oldest).total_seconds())
    return {"leaderboard_lag_s": lag_s, "leaderboard_settle_s": update_leaderboards.lag_s(current)}


# -- Redis -------------------------------------------------------------------------

def _read_redis(current: settings_module.Settings) -> dict[str, Any]:
    """Dead letters waiting (their Redis), and the leaderboards' checkpoint (theirs)."""
    found: dict[str, Any] = {}
    if current.dead_letter_url:
        client = redis_client.connect(current.dead_letter_url, timeout_s=TIMEOUT_S)
        try:
            found["dead_letters"] = int(client.hlen(deadletters.HASH_KEY))
        finally:
            client.close()
    if current.redis_url:
        client = redis_client.connect(current.redis_url, timeout_s=TIMEOUT_S)
        try:
            found["leaderboard_mark"] = int(client.hget(leaderboards.CHECKPOINT_KEY, update_leaderboards.LEDGER) or 0)
        finally:
            client.close()
    return found


# -- as Prometheus series ----------------------------------------------------------

def _gauge(name: str, documentation: str, labels: list[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, documentation, labels=labels)


def _maintenance_families(runs: list[MaintenanceRun], watched_since: datetime) -> Iterator[GaugeMetricFamily]:
    families = {
        "late_after": _gauge("rewards_maintenance_late_after_timestamp_seconds",
                             "When the job is late: two intervals after its last done run (or after beat started, "
                             "for a job that never completed one)", ["job_name"]),
        "interval": _gauge("rewards_maintenance_interval_seconds", "How often beat sends the job", ["job_name"]),
        "last_run": _gauge("rewards_maintenance_last_run_timestamp_seconds",
                           "When the job last ran, done or skipped", ["job_name"]),
        "last_done": _gauge("rewards_maintenance_last_done_timestamp_seconds",
                            "When the job last ran to the end and did its work", ["job_name"]),
        "skipped": _gauge("rewards_maintenance_last_run_skipped",
                          "1 when the last run skipped (another run held the job's lock)", ["job_name"]),
        "examined": _gauge("rewards_maintenance_last_done_examined", "Rows the last done run examined", ["job_name"]),
        "changed": _gauge("rewards_maintenance_last_done_changed", "Rows the last done run changed", ["job_name"]),
        "more": _gauge("rewards_maintenance_last_done_more",
                       "1 when the last done run stopped at its batch limit with work left", ["job_name"]),
        "took": _gauge("rewards_maintenance_last_done_duration_seconds", "How long the last done run took",
                       ["job_name"]),
    }
    mismatches = _gauge("rewards_reconcile_mismatches", "Broken invariants the last reconcile run found")
    for run in runs:
        families["interval"].add_metric([run.job], run.interval_s)
        since = run.done_at or watched_since
        families["late_after"].add_metric([run.job], since.timestamp() + 2 * run.interval_s)
        if run.last_run_at is not None:
            families["last_run"].add_metric([run.job], run.last_run_at.timestamp())
            families["skipped"].add_metric([run.job], float(run.skipped is not None))
        if run.done_at is not None:
            families["last_done"].add_metric([run.job], run.done_at.timestamp())
            families["examined"].add_metric([run.job], run.examined)
            families["changed"].add_metric([run.job], run.changed)
            families["more"].add_metric([run.job], float(run.more))
            families["took"].add_metric([run.job], run.took_ms / 1000)
            if run.job == contract.MAINTENANCE_RECONCILE:
                mismatches.add_metric([], run.details.get("mismatches", 0))
    yield from families.values()
    yield mismatches


def families(state: State, watched_since: datetime) -> Iterator[GaugeMetricFamily]:
    """The reading as Prometheus gauges; `watched_since`: when this beat started reading."""
    up = _gauge("rewards_state_source_up", "1 when the source answered this scrape", ["source"])
    for source in state.sources:
        up.add_metric([source], float(source not in state.errors))
    yield up
    if state.queue_messages is not None:
        queues = _gauge("rewards_queue_messages", "Messages waiting in each queue (ready, not yet taken)", ["queue"])
        for queue, count in state.queue_messages.items():
            queues.add_metric([queue], count)
        yield queues
    if state.dead_letters is not None:
        yield GaugeMetricFamily("rewards_dead_letters", "Failure records kept in Redis while PostgreSQL "
                                "could not take them; the outbox relay moves them", value=state.dead_letters)
    if state.failures_by_reason is not None:
        failures = _gauge("rewards_job_failures_unresolved", "job_failure rows: failed jobs not yet retried "
                          "or pruned", ["reason"])
        for reason, count in state.failures_by_reason.items():
            failures.add_metric([reason], count)
        yield failures
    if state.outbox_pending is not None:
        yield GaugeMetricFamily("rewards_outbox_pending", "Outbox events not yet delivered", value=state.outbox_pending)
        age_s = 0.0 if state.outbox_oldest_pending_at is None else \
            max(0.0, (state.read_at - state.outbox_oldest_pending_at).total_seconds())
        yield GaugeMetricFamily("rewards_outbox_oldest_pending_age_seconds",
                                "Age of the oldest undelivered outbox event; 0 when none waits", value=age_s)
    if state.maintenance is not None:
        yield from _maintenance_families(state.maintenance, watched_since)
    if state.leaderboard_lag_s is not None:
        yield GaugeMetricFamily("rewards_leaderboard_lag_seconds", "Age of the oldest ledger row after the "
                                "Redis leaderboards' checkpoint; 0 when there is none", value=state.leaderboard_lag_s)
        yield GaugeMetricFamily("rewards_leaderboard_settle_seconds", "How long the leaderboards' checkpoint may "
                                "wait at a gap in the ledger ids", value=state.leaderboard_settle_s)


class StateCollector(Collector):
    """Reads the servers on every scrape (beat's metrics endpoint)."""

    def __init__(self) -> None:
        self.started_at = utcnow()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        return families(read_state(), self.started_at)
