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
    # Flower refuses to start without authentication unless this is set
    # (workers/flower_guard.py); for a trusted local machine only.
    flower_unsafe_no_auth: bool = False


def _text(name: str, default: str) -> str:
    value = os.environ.get(name, default).strip()
    if not value:
        raise ConfigError(f"{name} is set but empty; unset it to use the default {default!r}")
    return value


def _int(name: str, default: int, *, minimum: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
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


def load() -> Settings:
    """Read every setting from the environment; raise ConfigError naming the bad one."""
    policy = Policy(
        checkin_xp=_int("CHECKIN_XP", 10, minimum=1),
        streak_bonus_xp=_int("STREAK_BONUS_XP", 150, minimum=0),
        streak_bonus_period_days=_int("STREAK_BONUS_PERIOD_DAYS", 7, minimum=1),
        pro_xp_multiplier=_int("PRO_XP_MULTIPLIER", 5, minimum=1),
    )
    settings = Settings(
        database_url=_text("REWARDS_DATABASE_URL", "sqlite:///rewards.sqlite3"),
        broker_url=_text("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0"),
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
