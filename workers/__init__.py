"""The Celery application: `celery -A workers worker -Q checkins,claims,operator,maintenance`."""

from celery import Celery, signals

from rewards import settings, transport

# Celery reads these from the environment ahead of its configuration; a
# deployment that keeps them in files (CELERY_BROKER_URL_FILE, …) has them
# put there before the app is configured.
settings.export_secret_files(settings.CELERY_ENVIRONMENT_VARIABLES)

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

__all__ = ["app"]
