"""RewardsClient: how an upstream app enqueues reward jobs.

It sends by task name (`send_task`), so an upstream app needs this module and
a broker URL, never the worker code. Producers in other languages send the
same names with JSON keyword arguments (see README, "Job contract").

    client = RewardsClient("redis://broker:6379/0", "redis://broker:6379/1")
    result = client.checkin(42)                 # occurred_at defaults to now
    result.get(timeout=10)                      # {"status": "applied", "xp_granted": 10, …}
"""

from __future__ import annotations

import os
from datetime import datetime, timezone
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from rewards import contract
from rewards import settings as settings_module

_UNSET: Any = object()


def _instant(value: datetime | str | None) -> str:
    if value is None:
        return datetime.now(timezone.utc).isoformat()
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return value.isoformat()


def _refuse_overridden(variable: str, given: str | None) -> None:
    # Celery prefers these environment variables over URLs given in code; an
    # upstream app passing one URL while the environment names another would
    # otherwise talk to the environment's server without knowing it.
    in_environment = os.environ.get(variable)
    if given and in_environment and given != in_environment:
        raise ValueError(f"{variable}={in_environment!r} in the environment overrides the URL "
                         f"given to RewardsClient ({given!r}); unset it or pass the same URL")


class RewardsClient:
    def __init__(self, broker_url: str | None = None, backend_url: str | None = None):
        _refuse_overridden("CELERY_BROKER_URL", broker_url)
        _refuse_overridden("CELERY_RESULT_BACKEND", backend_url)
        current = settings_module.get()
        broker_url = broker_url or current.broker_url
        self.app = Celery("rewards-client", broker=broker_url,
                          backend=backend_url or current.result_backend)
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            result_accept_content=["json"],
            task_send_sent_event=True,
            task_queues=contract.kombu_queues(),
            broker_connection_retry_on_startup=True,
            broker_transport_options=settings_module.broker_transport_options(current, broker_url),
        )

    def send(self, task_name: str, **kwargs: Any) -> AsyncResult:
        """Enqueue any job of the contract by name on its queue."""
        return self.app.send_task(task_name, kwargs=kwargs, queue=contract.queue_for(task_name))

    def checkin(self, partner_id: int, occurred_at: datetime | str | None = None) -> AsyncResult:
        return self.send(contract.CHECKIN, partner_id=partner_id, occurred_at=_instant(occurred_at))

    def update_partner(self, partner_id: int, *, pro_until: datetime | str | None = _UNSET,
                       timezone: str = _UNSET, occurred_at: datetime | str | None = None) -> AsyncResult:
        """Set PRO until an instant (None ends PRO) and/or the IANA time zone."""
        kwargs: dict[str, Any] = {"partner_id": partner_id, "occurred_at": _instant(occurred_at)}
        if pro_until is not _UNSET:
            kwargs["pro_until"] = None if pro_until is None else _instant(pro_until)
        if timezone is not _UNSET:
            kwargs["timezone"] = timezone
        return self.send(contract.PARTNER_UPDATE, **kwargs)

    def close(self) -> None:
        self.app.close()
