"""Configuration, read from environment variables in this one place.

A bad value stops start-up with a message that names the variable, so an
operator never finds out about a typo from a job that fails at 3 a.m.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from rewards.contract.payloads import MAX_BATCH_ITEMS
from rewards.rules import Policy


class ConfigError(ValueError):
    """An environment variable holds a value the engine cannot run with."""


FILE_SUFFIX = "_FILE"


def _read_secret_file(name: str, path: str) -> str:
    variable = name + FILE_SUFFIX
    try:
        value = Path(path).read_text().rstrip("\r\n")
    except OSError as error:
        raise ConfigError(f"{variable}={path!r} cannot be read ({error.strerror}): give a file this "
                          f"process may read, or set {name} itself instead") from None
    if not value.strip():
        raise ConfigError(f"{variable}={path!r} is an empty file: write the value of {name} into it, "
                          f"or unset {variable} to use the default")
    return value


class SecretFileEnvironment(Mapping[str, str]):
    """An environment in which NAME_FILE, when set, supplies NAME from that file's contents.

    The Docker-secrets convention: a deployment mounts a password-bearing URL
    as a file and points NAME_FILE at it, so the secret never shows in
    `docker inspect`, /proc/<pid>/environ or a crash report's environment.
    A name is resolved when it is read, so files of variables the engine
    never reads (SSL_CERT_FILE, say) are left alone. Setting both is refused:
    which of two values wins is a guess an operator should never have to make.
    """

    def __init__(self, base: Mapping[str, str]):
        self.base = base

    def file_of(self, name: str) -> str | None:
        """The path NAME_FILE names, or None; empty counts as unset (compose passes every variable)."""
        path = self.base.get(name + FILE_SUFFIX, "").strip()
        return path if path and not name.endswith(FILE_SUFFIX) else None

    def __getitem__(self, name: str) -> str:
        path = self.file_of(name)
        if path is None:
            return self.base[name]
        if self.base.get(name, "").strip():
            raise ConfigError(f"both {name} and {name}{FILE_SUFFIX} are set: unset one of them")
        return _read_secret_file(name, path)

    def __iter__(self):
        return iter(self.base)

    def __len__(self) -> int:
        return len(self.base)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.base or self.file_of(name) is not None)


# Read straight from the process environment by Celery (which prefers them to
# its configuration) and by Flower (every FLOWER_* option), not only through
# load(): their *_FILE forms are resolved into the environment itself.
CELERY_ENVIRONMENT_VARIABLES = ("CELERY_BROKER_URL", "CELERY_RESULT_BACKEND")
FLOWER_ENVIRONMENT_VARIABLES = ("FLOWER_BASIC_AUTH", "FLOWER_OAUTH2_KEY", "FLOWER_OAUTH2_SECRET")


def export_secret_files(names: tuple[str, ...], environ: MutableMapping[str, str] | None = None) -> None:
    """Replace NAME_FILE by NAME in the environment, for readers that know no *_FILE.

    NAME_FILE is removed, not kept beside NAME: a child process (a pool
    worker started afresh, a subprocess) seeing both would refuse to start.
    """
    environ = os.environ if environ is None else environ
    resolved = SecretFileEnvironment(environ)
    for name in names:
        if resolved.file_of(name) is not None:
            environ[name] = resolved[name]
        environ.pop(name + FILE_SUFFIX, None)


@dataclass(frozen=True)
class Settings:
    database_url: str
    # The read side (rewards.queries, reports, the leaderboard SQL fallback)
    # and retention (pruning) may connect as roles of their own; both default
    # to database_url (migrations/versions/0009_roles.py has the roles).
    read_database_url: str
    retention_database_url: str
    broker_url: str
    result_backend: str
    policy: Policy
    statement_timeout_ms: int
    lock_timeout_ms: int
    retry_horizon_s: int
    retry_backoff_s_max: int
    connect_timeout_s: int
    future_tolerance_s: int
    visibility_timeout_s: int
    task_time_limit_s: int
    broker_folder: str | None
    # Where failure records go when PostgreSQL cannot take them (rewards.deadletters).
    dead_letter_url: str | None
    catalog_path: str | None
    maintenance: MaintenanceSettings
    # Flower refuses to start without authentication unless this is set
    # (workers/flower_guard.py); for a trusted local machine only.
    flower_unsafe_no_auth: bool = False
    # Redis holding the leaderboards (rewards.leaderboards); None: they are read from SQL.
    redis_url: str | None = None
    # The master's name when a Redis URL is sentinel:// (rewards.redis_client).
    redis_sentinel_master: str = "rewards"
    # The most items one batch message (rewards.checkin.batch, rewards.claims.batch) may carry.
    batch_max: int = 500
    # RewardsClient coalesces partner-facing jobs into batch messages when set
    # (rewards.coalescing): the first job of a batch waits this long for others.
    client_linger_ms: int | None = None
    # Workers and beat serve Prometheus metrics on this port when set
    # (rewards.metrics.serve), on this address, behind HTTP basic auth when
    # REWARDS_METRICS_BASIC_AUTH (user:password) is set.
    metrics_port: int | None = None
    metrics_address: str = "127.0.0.1"
    metrics_basic_auth: str | None = None


@dataclass(frozen=True)
class MaintenanceSettings:
    """The beat schedule, the maintenance jobs' limits, and where outbox events go."""

    expire_streaks_every_s: int
    reconcile_every_s: int
    streak_risk_every_s: int
    relay_outbox_every_s: int
    sweep_stale_tasks_every_s: int
    update_leaderboards_every_s: int
    retention_every_s: int
    stale_task_days: int
    streak_risk_hour: int
    batch_size: int
    max_batches: int
    reconcile_lag_s: int
    relay_batch_size: int
    relay_budget_s: int
    relay_backoff_s_max: int
    outbox_retention_days: int
    audit_retention_days: int
    failure_retention_days: int
    events_sink: str
    events_broker_url: str
    webhook_url: str | None
    webhook_secret: str | None
    webhook_timeout_s: int


EVENT_SINKS = ("queue", "webhook")


def _text(env: Mapping[str, str], name: str, default: str) -> str:
    value = env.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} is set but empty; unset it to use the default {default!r}")
    return value


def _int(env: Mapping[str, str], name: str, default: int, *, minimum: int,
         maximum: int | None = None) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, got {value}")
    return value


def _optional_int(env: Mapping[str, str], name: str, *, minimum: int, maximum: int) -> int | None:
    """None when unset or empty; otherwise a whole number in range."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _int(env, name, minimum, minimum=minimum, maximum=maximum)


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return value in _TRUE


def _load_maintenance(env: Mapping[str, str], broker_url: str) -> MaintenanceSettings:
    return MaintenanceSettings(
        expire_streaks_every_s=_int(env, "REWARDS_EXPIRE_STREAKS_EVERY_S", 3_600, minimum=1),
        reconcile_every_s=_int(env, "REWARDS_RECONCILE_EVERY_S", 86_400, minimum=1),
        streak_risk_every_s=_int(env, "REWARDS_STREAK_RISK_EVERY_S", 3_600, minimum=1),
        relay_outbox_every_s=_int(env, "REWARDS_RELAY_OUTBOX_EVERY_S", 5, minimum=1),
        sweep_stale_tasks_every_s=_int(env, "REWARDS_SWEEP_STALE_TASKS_EVERY_S", 3_600, minimum=1),
        stale_task_days=_int(env, "STALE_TASK_DAYS", 7, minimum=1),
        streak_risk_hour=_int(env, "STREAK_RISK_HOUR", 20, minimum=0, maximum=23),
        batch_size=_int(env, "REWARDS_MAINTENANCE_BATCH_SIZE", 500, minimum=1),
        max_batches=_int(env, "REWARDS_MAINTENANCE_MAX_BATCHES", 200, minimum=1),
        reconcile_lag_s=_int(env, "REWARDS_RECONCILE_LAG_S", 300, minimum=0),
        relay_batch_size=_int(env, "REWARDS_RELAY_BATCH_SIZE", 100, minimum=1),
        relay_budget_s=_int(env, "REWARDS_RELAY_BUDGET_S", 20, minimum=1),
        relay_backoff_s_max=_int(env, "REWARDS_RELAY_BACKOFF_S_MAX", 600, minimum=1),
        update_leaderboards_every_s=_int(env, "REWARDS_UPDATE_LEADERBOARDS_EVERY_S", 5, minimum=1),
        # Keys de-duplicate events for a day or two (streak_risk:{partner}:{day});
        # delivered rows must outlive that, so a replayed run cannot re-emit.
        outbox_retention_days=_int(env, "REWARDS_OUTBOX_RETENTION_DAYS", 7, minimum=2),
        retention_every_s=_int(env, "REWARDS_RETENTION_EVERY_S", 86_400, minimum=1),
        # audit_event_drop_partitions refuses to drop anything younger than 30 days.
        audit_retention_days=_int(env, "REWARDS_AUDIT_RETENTION_DAYS", 90, minimum=31),
        failure_retention_days=_int(env, "REWARDS_FAILURE_RETENTION_DAYS", 30, minimum=1),
        # Empty means unset for these (compose passes every variable, set or not).
        events_sink=env.get("REWARDS_EVENTS_SINK", "").strip() or "queue",
        events_broker_url=env.get("REWARDS_EVENTS_BROKER_URL", "").strip() or broker_url,
        webhook_url=env.get("REWARDS_WEBHOOK_URL", "").strip() or None,
        webhook_secret=env.get("REWARDS_WEBHOOK_SECRET", "").strip() or None,
        webhook_timeout_s=_int(env, "REWARDS_WEBHOOK_TIMEOUT_S", 5, minimum=1),
    )


def default_visibility_timeout_s(task_time_limit_s: int, retry_backoff_s_max: int) -> int:
    """Redis's redelivery window: twice the longest a worker holds a message unacknowledged.

    A worker holds a message for at most one job run (the hard time limit) or
    one retry countdown (the backoff cap; retries are re-published, each with
    a countdown of its own). Doubling it leaves room for a message that waits
    behind another prefetched one; a redelivery that still comes early is a
    `duplicate`, while one that comes late is minutes of a caller waiting for
    a dead worker's jobs. With the defaults (60 s, 30 s): 180 s.
    """
    return 2 * (task_time_limit_s + retry_backoff_s_max)


# The URLs rewards.redis_client connects to: one server, or Sentinel's master.
REDIS_SCHEMES = ("redis://", "rediss://", "sentinel://")


def _dead_letter_url(env: Mapping[str, str], broker_url: str) -> str | None:
    # The broker's Redis by default: if it is down, no job is running anyway.
    explicit = env.get("REWARDS_DEAD_LETTER_URL", "").strip()
    if explicit:
        if not explicit.startswith(REDIS_SCHEMES):
            raise ConfigError(f"REWARDS_DEAD_LETTER_URL must be a redis:// or sentinel:// URL, got {explicit!r}")
        return explicit
    if broker_url.startswith(REDIS_SCHEMES):
        return broker_url
    result_backend = env.get("CELERY_RESULT_BACKEND", "")
    return result_backend if result_backend.startswith(REDIS_SCHEMES) else None


def load(env: Mapping[str, str] | None = None) -> Settings:
    """Read every setting from `env` (the process environment by default); ConfigError names a bad one.

    Any variable may instead be given as NAME_FILE, the path of a file holding its value.
    """
    env = SecretFileEnvironment(os.environ if env is None else env)
    broker_url = _text(env, "CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    task_time_limit_s = _int(env, "REWARDS_TASK_TIME_LIMIT_S", 60, minimum=1)
    retry_backoff_s_max = _int(env, "REWARDS_RETRY_BACKOFF_S_MAX", 30, minimum=1)
    policy = Policy(
        checkin_xp=_int(env, "CHECKIN_XP", 10, minimum=1),
        streak_bonus_xp=_int(env, "STREAK_BONUS_XP", 150, minimum=0),
        streak_bonus_period_days=_int(env, "STREAK_BONUS_PERIOD_DAYS", 7, minimum=1),
        pro_xp_multiplier=_int(env, "PRO_XP_MULTIPLIER", 5, minimum=1),
        # A job this many local days before the partner's latest check-in is
        # still applied (later days re-priced); an older one is `too_late`.
        late_window_days=_int(env, "REWARDS_LATE_WINDOW_DAYS", 7, minimum=0, maximum=366),
    )
    database_url = _text(env, "REWARDS_DATABASE_URL", "sqlite:///rewards.sqlite3")
    settings = Settings(
        database_url=database_url,
        read_database_url=env.get("REWARDS_READ_DATABASE_URL", "").strip() or database_url,
        retention_database_url=env.get("REWARDS_RETENTION_DATABASE_URL", "").strip() or database_url,
        broker_url=broker_url,
        result_backend=_text(env, "CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
        policy=policy,
        statement_timeout_ms=_int(env, "REWARDS_STATEMENT_TIMEOUT_MS", 5_000, minimum=1),
        lock_timeout_ms=_int(env, "REWARDS_LOCK_TIMEOUT_MS", 2_000, minimum=1),
        retry_horizon_s=_int(env, "REWARDS_RETRY_HORIZON_S", 3_600, minimum=0),
        retry_backoff_s_max=retry_backoff_s_max,
        connect_timeout_s=_int(env, "REWARDS_CONNECT_TIMEOUT_S", 5, minimum=1),
        future_tolerance_s=_int(env, "REWARDS_FUTURE_TOLERANCE_S", 300, minimum=0),
        visibility_timeout_s=_int(env, "CELERY_VISIBILITY_TIMEOUT_S",
                                  default_visibility_timeout_s(task_time_limit_s, retry_backoff_s_max),
                                  minimum=1),
        task_time_limit_s=task_time_limit_s,
        broker_folder=env.get("REWARDS_BROKER_FOLDER") or None,
        dead_letter_url=_dead_letter_url(env, broker_url),
        # The task catalogue file; unset means the one shipped as rewards/catalog.toml.
        catalog_path=env.get("REWARDS_CATALOG_PATH", "").strip() or None,
        maintenance=_load_maintenance(env, broker_url),
        flower_unsafe_no_auth=_flag(env, "REWARDS_FLOWER_UNSAFE_NO_AUTH", False),
        redis_url=env.get("REWARDS_REDIS_URL", "").strip() or None,
        # Empty reads as unset: compose passes the variable empty when .env leaves it out.
        redis_sentinel_master=env.get("REWARDS_REDIS_SENTINEL_MASTER", "").strip() or "rewards",
        batch_max=_int(env, "REWARDS_BATCH_MAX", 500, minimum=1, maximum=MAX_BATCH_ITEMS),
        client_linger_ms=_optional_int(env, "REWARDS_CLIENT_LINGER_MS", minimum=0, maximum=1_000),
        metrics_port=_optional_int(env, "REWARDS_METRICS_PORT", minimum=1, maximum=65_535),
        metrics_address=env.get("REWARDS_METRICS_ADDRESS", "").strip() or "127.0.0.1",
        metrics_basic_auth=env.get("REWARDS_METRICS_BASIC_AUTH", "").strip() or None,
    )
    _check_consistent(settings)
    if settings.broker_url.startswith("filesystem://") and not settings.broker_folder:
        raise ConfigError("CELERY_BROKER_URL=filesystem:// needs REWARDS_BROKER_FOLDER, "
                          "the folder that holds the queued messages")
    return settings


def _check_consistent(settings: Settings) -> None:
    # Redis redelivers any message still unacknowledged after the visibility
    # timeout, even one a live worker is running; a retry delay or a job that
    # runs longer than it would be delivered twice on purpose.
    longest_hold_s = settings.retry_backoff_s_max + settings.task_time_limit_s
    if settings.visibility_timeout_s <= longest_hold_s:
        raise ConfigError(
            f"CELERY_VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) must exceed "
            f"REWARDS_RETRY_BACKOFF_S_MAX + REWARDS_TASK_TIME_LIMIT_S ({longest_hold_s})"
        )
    # A connection attempt must end well inside a job's time limit, so a job
    # waiting on a dead server retries instead of being killed.
    if settings.connect_timeout_s >= settings.task_time_limit_s:
        raise ConfigError(f"REWARDS_CONNECT_TIMEOUT_S ({settings.connect_timeout_s}) must stay below "
                          f"REWARDS_TASK_TIME_LIMIT_S ({settings.task_time_limit_s})")
    _check_maintenance(settings.maintenance, settings.task_time_limit_s)
    _check_metrics(settings)


LOOPBACK_ADDRESSES = ("127.0.0.1", "::1", "localhost")


def _check_metrics(settings: Settings) -> None:
    # The metrics name jobs, queues and XP totals, not partners; still, as
    # with Flower, what serves beyond this machine must ask who is asking.
    auth = settings.metrics_basic_auth
    if auth is not None and not all(auth.partition(":")[::2]):
        raise ConfigError("REWARDS_METRICS_BASIC_AUTH must be user:password, both non-empty")
    if settings.metrics_port is not None and settings.metrics_address not in LOOPBACK_ADDRESSES and auth is None:
        raise ConfigError(
            f"REWARDS_METRICS_ADDRESS={settings.metrics_address} serves metrics beyond this machine: "
            "set REWARDS_METRICS_BASIC_AUTH=user:password (Prometheus scrapes with basic_auth), "
            "or leave the address at 127.0.0.1")


def _check_maintenance(maintenance: MaintenanceSettings, task_time_limit_s: int) -> None:
    if maintenance.events_sink not in EVENT_SINKS:
        raise ConfigError(f"REWARDS_EVENTS_SINK must be one of {', '.join(EVENT_SINKS)}, "
                          f"got {maintenance.events_sink!r}")
    if maintenance.events_sink == "webhook":
        if not maintenance.webhook_url or not maintenance.webhook_url.startswith(("http://", "https://")):
            raise ConfigError("REWARDS_WEBHOOK_URL must be an http(s) URL when REWARDS_EVENTS_SINK=webhook")
        if not maintenance.webhook_secret or len(maintenance.webhook_secret) < 16:
            raise ConfigError("REWARDS_WEBHOOK_SECRET must be set (at least 16 characters) "
                              "when REWARDS_EVENTS_SINK=webhook: receivers verify the signature with it")
    # A relay run stops starting deliveries after its budget; the one in
    # flight may take a webhook timeout more, and all of it must end before
    # the job's time limit kills it half-way through recording.
    if maintenance.relay_budget_s + maintenance.webhook_timeout_s >= task_time_limit_s:
        raise ConfigError(
            f"REWARDS_RELAY_BUDGET_S + REWARDS_WEBHOOK_TIMEOUT_S "
            f"({maintenance.relay_budget_s + maintenance.webhook_timeout_s}) must stay below "
            f"REWARDS_TASK_TIME_LIMIT_S ({task_time_limit_s})"
        )
    # Ledger ids are handed out before commit, so a row with a smaller id can
    # become visible after a larger one; the reconciler's checkpoint stays
    # this far behind, which must cover the longest transaction.
    if maintenance.reconcile_lag_s < task_time_limit_s:
        raise ConfigError(f"REWARDS_RECONCILE_LAG_S ({maintenance.reconcile_lag_s}) must be at least "
                          f"REWARDS_TASK_TIME_LIMIT_S ({task_time_limit_s})")


@lru_cache(maxsize=1)
def get() -> Settings:
    """The process's settings, read once."""
    return load()


# The embedded broker's folders under REWARDS_BROKER_FOLDER (rewards.transport).
BROKER_FOLDERS = ("queue", "control", "claimed", "quarantine")


def broker_transport(settings: Settings, broker_url: str | None = None) -> str | None:
    """The transport class for the broker, or None for the one its URL names.

    `filesystem://` is served by rewards.transport, which never exposes a
    half-written message; producers and workers must both use it.
    """
    if (broker_url or settings.broker_url).startswith("filesystem://"):
        return "rewards.transport:Transport"
    return None


def result_backend_transport_options(settings: Settings, backend_url: str | None = None) -> dict:
    """Each attempt to store a result gives up after 2 s (celeryconfig retries it); behind Sentinel,
    the master's name."""
    options: dict = {"retry_policy": {"timeout": 2.0}}
    if (backend_url or settings.result_backend).startswith("sentinel://"):
        options["master_name"] = settings.redis_sentinel_master
    return options


def broker_transport_options(settings: Settings, broker_url: str | None = None) -> dict:
    """Transport options for the broker (the configured one by default), shared by workers and producers."""
    if (broker_url or settings.broker_url).startswith("filesystem://"):
        # The embedded broker: one folder of message files that every process
        # reads and writes, and a control folder so `inspect` works; see
        # ensure_broker_folders.
        folder = Path(settings.broker_folder)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            # A message a consumer is reading, and a file it could not parse.
            "claim_folder": str(folder / "claimed"),
            "quarantine_folder": str(folder / "quarantine"),
            "polling_interval": 0.05,
        }
    if (broker_url or settings.broker_url).startswith(("amqp://", "amqps://", "pyamqp://")):
        # RabbitMQ: a send returns only once the broker has the message
        # (publisher confirms); queues are durable and messages persistent,
        # and a dead worker's unacknowledged messages come back the moment
        # its connection drops, with no visibility timeout to wait out.
        return {"confirm_publish": True}
    return {
        # Redis redelivers a message not acknowledged within this window; it
        # exceeds the longest job and every retry delay (see _check_consistent).
        "visibility_timeout": settings.visibility_timeout_s,
        # Look for abandoned messages often enough that a crashed worker's
        # jobs come back soon after the visibility timeout has passed.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
        "unacked_restore_throttle": 1,
    }


def ensure_broker_folders(settings: Settings, broker_url: str | None = None) -> None:
    """Create the embedded broker's folders if it is the broker in use (producers and workers call this)."""
    if (broker_url or settings.broker_url).startswith("filesystem://"):
        for sub in BROKER_FOLDERS:
            (Path(settings.broker_folder) / sub).mkdir(parents=True, exist_ok=True)
