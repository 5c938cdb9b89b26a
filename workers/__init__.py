"""The Celery application: `celery -A workers worker -Q checkins,claims,operator,maintenance`."""

import atexit
import logging
import os
import shutil
import tempfile

from celery import Celery, signals

from rewards import settings, transport

# Celery reads these from the environment ahead of its configuration; a
# deployment that keeps them in files (CELERY_BROKER_URL_FILE, …) has them
# put there before the app is configured.
settings.export_secret_files(settings.CELERY_ENVIRONMENT_VARIABLES)


def _count_across_processes() -> None:
    """Pool processes count into files of a folder of this process's own, which its /metrics sums.

    Each worker (and beat) gets its own folder, so two on one machine never
    add up each other's counts; a restarted one starts from zero, as
    Prometheus's counters expect. prometheus_client picks how values are kept
    when it is imported, and `celery` has imported it already (Flower's
    command plugin), so the choice is made again here, before the engine's
    metrics (rewards.metrics, imported with the jobs) keep any value.
    """
    if settings.get().metrics_port is None:
        return
    folder = tempfile.mkdtemp(prefix="rewards-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    from prometheus_client import values

    values.ValueClass = values.get_value_class()
    owner_pid = os.getpid()
    atexit.register(lambda: os.getpid() == owner_pid and shutil.rmtree(folder, ignore_errors=True))


_count_across_processes()

# Redis URLs are served by transports that tell each job the queue it was
# really taken from (rewards.transport); the job's arrival check relies on it.
transport.install()

app = Celery("rewards", include=[
    "workers.checkin", "workers.partner", "workers.task", "workers.referral", "workers.claims_batch", "workers.adjust",
    "workers.maintenance",
])
app.config_from_object("celeryconfig")

# `celery -A workers flower` refuses to start without authentication.
from workers import flower_guard  # noqa: E402

flower_guard.install_if_running_flower()

# Retries' countdowns on direct exchanges are held by the worker (workers/consumer.py).
from workers import consumer  # noqa: E402

consumer.quiet_countdown_warning()


@signals.celeryd_init.connect
def _prepare_broker(**_) -> None:
    """The embedded broker's folders exist before the worker consumes from them."""
    settings.ensure_broker_folders(settings.get())

@signals.worker_init.connect
def _serve_job_metrics(**_) -> None:
    from rewards.metrics import serve

    serve.start("worker")


@signals.beat_init.connect
def _serve_state_metrics(**_) -> None:
    from rewards.metrics import serve, state

    serve.start("beat", state.StateCollector())


@signals.worker_process_init.connect
def _connect_before_the_first_job(**_) -> None:
    """Each pool process opens its PostgreSQL connection when it starts, not inside its first job.

    That job otherwise paid for the connection and held up every job queued
    behind it: the first job of each process took ~125 ms against ~3 ms, the
    whole of the p99 of `make bench`'s enqueue-to-commit latency. A database
    that is down now is no reason not to start: the first job connects and
    retries as always.
    """
    from sqlalchemy import text

    from rewards import db

    try:
        with db.get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as error:  # noqa: BLE001 - see above
        logging.getLogger("rewards.jobs").warning("event=worker.connect_failed error=%s", type(error).__name__)


__all__ = ["app"]
