"""Shared test set-up: the servers every tier may use, named before anything reads settings.

`make test` exports the same values; these defaults let a plain `pytest` run
after `make migrate` has prepared the database.
"""

import os

# The suite connects with production's least privilege (migration 0009's roles);
# the owner's URL is for test support code only (tests/support/database.py).
_TEST_DB = "127.0.0.1:5432/rewards_test"
os.environ.setdefault("REWARDS_DATABASE_URL", f"postgresql+psycopg://rewards_test_worker@{_TEST_DB}")
os.environ.setdefault("REWARDS_READ_DATABASE_URL", f"postgresql+psycopg://rewards_test_reader@{_TEST_DB}")
os.environ.setdefault("REWARDS_RETENTION_DATABASE_URL", f"postgresql+psycopg://rewards_test_retention@{_TEST_DB}")
os.environ.setdefault("REWARDS_TEST_ADMIN_DATABASE_URL", f"postgresql+psycopg://postgres@{_TEST_DB}")
os.environ.setdefault("CELERY_BROKER_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("CELERY_RESULT_BACKEND", "redis://127.0.0.1:6379/15")
os.environ.setdefault("REWARDS_REDIS_URL", "redis://127.0.0.1:6379/13")
# Fail fast on a held lock and retry quickly, so retry tests take seconds.
os.environ.setdefault("REWARDS_LOCK_TIMEOUT_MS", "500")
os.environ.setdefault("REWARDS_RETRY_HORIZON_S", "1")
os.environ.setdefault("REWARDS_RETRY_BACKOFF_S_MAX", "1")
# Two weeks, so a fortnight of check-ins delivered in reverse is all inside it.
os.environ.setdefault("REWARDS_LATE_WINDOW_DAYS", "14")
