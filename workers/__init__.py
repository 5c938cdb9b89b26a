"""The Celery application: `celery -A workers worker -Q checkins,claims,maintenance`."""

from celery import Celery

app = Celery("rewards", include=["workers.checkin", "workers.partner", "workers.maintenance"])
app.config_from_object("celeryconfig")

__all__ = ["app"]
