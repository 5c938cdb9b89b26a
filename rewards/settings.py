"""Configuration, read from environment variables in this one place.

A bad value stops start-up with a message that names the variable, so an
operator never finds out about a typo from a job that fails at 3 a.m.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from functools import lru_cache

from rewards.rules import Policy


class ConfigError(ValueError):
    """An environment variable holds a value the engine cannot run with."""


@dataclass(frozen=True)
class Settings:
    database_url: str
    broker_url: str
    result_backend: str
    policy: Policy
    statement_timeout_ms: int
    lock_timeout_ms: int
    job_max_retries: int
    retry_backoff_s_max: int
    future_tolerance_s: int
    visibility_timeout_s: int
    task_time_limit_s: int
    broker_folder: str | None
    catalog_path: str | None
    maintenance: MaintenanceSettings
    # Flower refuses to start without authentication unless this is set
    # (workers/flower_guard.py); for a trusted local machine only.
    flower_unsafe_no_auth: bool = False


@dataclass(frozen=True)
class MaintenanceSettings:
    """The beat schedule, the maintenance jobs' limits, and where outbox events go."""

    expire_streaks_every_s: int
    reconcile_every_s: int
    streak_risk_every_s: int
    relay_outbox_every_s: int
    sweep_stale_tasks_every_s: int
    stale_task_days: int
    streak_risk_hour: int
    batch_size: int
    max_batches: int
    reconcile_lag_s: int
    relay_batch_size: int
    relay_budget_s: int
    relay_backoff_s_max: int
    outbox_retention_days: int
    events_sink: str
    events_broker_url: str
    webhook_url: str | None
    webhook_secret: str | None
    webhook_timeout_s: int


EVENT_SINKS = ("queue", "webhook")


def _text(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} is set but empty; unset it to use the default {default!r}")
    return value


def _int(name: str, default: int, *, minimum: int, maximum: int | None = None) -> int:
    raw = os.environ.get(name)
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


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _flag(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value not in _TRUE + _FALSE:
        raise ConfigError(f"{name} must be 1 or 0, got {raw!r}")
    return value in _TRUE


def _load_maintenance(broker_url: str) -> MaintenanceSettings:
    return MaintenanceSettings(
        expire_streaks_every_s=_int("REWARDS_EXPIRE_STREAKS_EVERY_S", 3_600, minimum=1),
        reconcile_every_s=_int("REWARDS_RECONCILE_EVERY_S", 86_400, minimum=1),
        streak_risk_every_s=_int("REWARDS_STREAK_RISK_EVERY_S", 3_600, minimum=1),
        relay_outbox_every_s=_int("REWARDS_RELAY_OUTBOX_EVERY_S", 5, minimum=1),
        sweep_stale_tasks_every_s=_int("REWARDS_SWEEP_STALE_TASKS_EVERY_S", 3_600, minimum=1),
        stale_task_days=_int("STALE_TASK_DAYS", 7, minimum=1),
        streak_risk_hour=_int("STREAK_RISK_HOUR", 20, minimum=0, maximum=23),
        batch_size=_int("REWARDS_MAINTENANCE_BATCH_SIZE", 500, minimum=1),
        max_batches=_int("REWARDS_MAINTENANCE_MAX_BATCHES", 200, minimum=1),
        reconcile_lag_s=_int("REWARDS_RECONCILE_LAG_S", 300, minimum=0),
        relay_batch_size=_int("REWARDS_RELAY_BATCH_SIZE", 100, minimum=1),
        relay_budget_s=_int("REWARDS_RELAY_BUDGET_S", 20, minimum=1),
        relay_backoff_s_max=_int("REWARDS_RELAY_BACKOFF_S_MAX", 600, minimum=1),
        # Keys de-duplicate events for a day or two (streak_risk:{partner}:{day});
        # delivered rows must outlive that, so a replayed run cannot re-emit.
        outbox_retention_days=_int("REWARDS_OUTBOX_RETENTION_DAYS", 7, minimum=2),
        # Empty means unset for these (compose passes every variable, set or not).
        events_sink=os.environ.get("REWARDS_EVENTS_SINK", "").strip() or "queue",
        events_broker_url=os.environ.get("REWARDS_EVENTS_BROKER_URL", "").strip() or broker_url,
        webhook_url=os.environ.get("REWARDS_WEBHOOK_URL", "").strip() or None,
        webhook_secret=os.environ.get("REWARDS_WEBHOOK_SECRET", "").strip() or None,
        webhook_timeout_s=_int("REWARDS_WEBHOOK_TIMEOUT_S", 5, minimum=1),
    )


def load() -> Settings:
    """Read every setting from the environment; raise ConfigError naming the bad one."""
    broker_url = _text("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
    policy = Policy(
        checkin_xp=_int("CHECKIN_XP", 10, minimum=1),
        streak_bonus_xp=_int("STREAK_BONUS_XP", 150, minimum=0),
        streak_bonus_period_days=_int("STREAK_BONUS_PERIOD_DAYS", 7, minimum=1),
        pro_xp_multiplier=_int("PRO_XP_MULTIPLIER", 5, minimum=1),
    )
    settings = Settings(
        database_url=_text("REWARDS_DATABASE_URL", "sqlite:///rewards.sqlite3"),
        broker_url=broker_url,
        result_backend=_text("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/1"),
        policy=policy,
        statement_timeout_ms=_int("REWARDS_STATEMENT_TIMEOUT_MS", 5_000, minimum=1),
        lock_timeout_ms=_int("REWARDS_LOCK_TIMEOUT_MS", 2_000, minimum=1),
        job_max_retries=_int("REWARDS_JOB_MAX_RETRIES", 5, minimum=0),
        retry_backoff_s_max=_int("REWARDS_RETRY_BACKOFF_S_MAX", 30, minimum=1),
        future_tolerance_s=_int("REWARDS_FUTURE_TOLERANCE_S", 300, minimum=0),
        visibility_timeout_s=_int("CELERY_VISIBILITY_TIMEOUT_S", 3_600, minimum=1),
        task_time_limit_s=_int("REWARDS_TASK_TIME_LIMIT_S", 60, minimum=1),
        broker_folder=os.environ.get("REWARDS_BROKER_FOLDER") or None,
        # The task catalogue file; unset means the one shipped as rewards/catalog.toml.
        catalog_path=os.environ.get("REWARDS_CATALOG_PATH", "").strip() or None,
        maintenance=_load_maintenance(broker_url),
        flower_unsafe_no_auth=_flag("REWARDS_FLOWER_UNSAFE_NO_AUTH", False),
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
    longest_hold_s = max(settings.retry_backoff_s_max, settings.task_time_limit_s)
    if settings.visibility_timeout_s <= longest_hold_s:
        raise ConfigError(
            f"CELERY_VISIBILITY_TIMEOUT_S ({settings.visibility_timeout_s}) must exceed "
            f"REWARDS_RETRY_BACKOFF_S_MAX and REWARDS_TASK_TIME_LIMIT_S ({longest_hold_s})"
        )
    _check_maintenance(settings.maintenance, settings.task_time_limit_s)


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


def broker_transport_options(settings: Settings, broker_url: str | None = None) -> dict:
    """Transport options for the broker (the configured one by default), shared by workers and producers."""
    if (broker_url or settings.broker_url).startswith("filesystem://"):
        # The embedded broker: one folder of message files that every process
        # reads and writes, and a control folder so `inspect` works.
        folder = Path(settings.broker_folder)
        for sub in ("queue", "control"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        return {
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "control_folder": str(folder / "control"),
            "polling_interval": 0.05,
        }
    return {
        # Redis redelivers a message not acknowledged within this window; it
        # exceeds the longest job and every retry delay (see _check_consistent).
        "visibility_timeout": settings.visibility_timeout_s,
        # Look for abandoned messages often enough that a crashed worker's
        # jobs come back soon after the visibility timeout has passed.
        "unacked_restore_interval": max(1, min(10, settings.visibility_timeout_s // 2)),
        "unacked_restore_throttle": 1,
    }
