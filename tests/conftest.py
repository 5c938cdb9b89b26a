"""Shared test set-up: the servers every tier may use, named before anything reads settings.

`make test` exports the same values; these defaults let a plain `pytest` run
after `make migrate` has prepared the database.
"""

import os

os.environ.setdefault("REWARDS_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/rewards_test")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("REWARDS_REDIS_URL", "redis://127.0.0.1:6379/13")
# Fail fast on a held lock and retry quickly, so retry tests take seconds.
os.environ.setdefault("REWARDS_LOCK_TIMEOUT_MS", "500")
os.environ.setdefault("REWARDS_RETRY_HORIZON_S", "1")
os.environ.setdefault("REWARDS_RETRY_BACKOFF_S_MAX", "1")
# Two weeks, so a fortnight of check-ins delivered in reverse is all inside it.
os.environ.setdefault("REWARDS_LATE_WINDOW_DAYS", "14")
