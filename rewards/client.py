"""RewardsClient: how an upstream app enqueues reward jobs.

It sends by task name (`send_task`), so an upstream app needs this module and
a broker URL, never the worker code. Producers in other languages send the
same names with JSON keyword arguments (see docs/contract.md, "Job contract").

    client = RewardsClient("redis://broker:6379/0", "redis://broker:6379/1")
    result = client.checkin(42)                 # occurred_at defaults to now
    result.get(timeout=10)                      # {"status": "applied", "xp_granted": 10, …}
    client.checkin(42, ignore_result=True)      # fire and forget: no result is stored
    client.checkin_many([(42, None), (43, "2026-11-24T09:30:00+00:00")])  # one message, a result per check-in
    client.start_task(42, "invite_3_friends")   # later: client.claim_task(42, "invite_3_friends")
    client.record_referral(42, 43)              # partner 42 referred partner 43
    client.adjust(42, -100, "refund reversal", request_id="ticket-981")
    client.outcome("adjustment:ticket-981")     # what PostgreSQL holds for that key, or None
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from celery import Celery
from celery.result import AsyncResult

from rewards import contract
from rewards import settings as settings_module
from rewards.coalescing import Coalescer, JobResult, ResultReader

_UNSET: Any = object()


def _instant(value: datetime | str | None) -> str:
    if value is None:
        return datetime.now(timezone.utc).isoformat()
    if isinstance(value, str):
        return value
    if value.tzinfo is None:
        raise ValueError("occurred_at must be timezone-aware, e.g. datetime.now(timezone.utc)")
    return value.isoformat()


def _checkin_item(checkin: Mapping[str, Any] | tuple[int, datetime | str | None]) -> dict[str, Any]:
    if isinstance(checkin, Mapping):
        return {"partner_id": checkin["partner_id"], "occurred_at": _instant(checkin.get("occurred_at"))}
    partner_id, occurred_at = checkin
    return {"partner_id": partner_id, "occurred_at": _instant(occurred_at)}


def _refuse_overridden(variable: str, given: str | None) -> None:
    # Celery prefers these environment variables over URLs given in code; an
    # upstream app passing one URL while the environment names another would
    # otherwise talk to the environment's server without knowing it.
    in_environment = os.environ.get(variable)
    if given and in_environment and given != in_environment:
        raise ValueError(f"{variable}={in_environment!r} in the environment overrides the URL "
                         f"RewardsClient was given ({given!r}); unset it or pass the same URL")


class NotPermitted(PermissionError):
    """The broker refused the job: this client's broker user may not send it (docs/security.md)."""

    def __init__(self, task_name: str, user: str | None, error: Exception):
        queue = contract.queue_for(task_name)
        super().__init__(
            f"the broker refused {task_name}: broker user {user or '(unnamed)'} may not send to the {queue!r} "
            f"queue. Send it with the credentials of a role that may ({', '.join(_roles_for(queue))}). "
            f"Broker said: {error}")
        self.task_name, self.queue = task_name, queue


def _roles_for(queue: str) -> list[str]:
    return [role for role, queues in contract.QUEUES_BY_ROLE.items() if queue in queues]


def _refused_by_broker(error: BaseException) -> bool:
    """A permission refusal: RabbitMQ's ACCESS_REFUSED / PRECONDITION_FAILED, or Redis's NOPERM."""
    from amqp.exceptions import AccessRefused, PreconditionFailed
    from redis.exceptions import NoPermissionError

    for _ in range(8):  # kombu wraps the driver's error once or twice
        if error is None:
            return False
        if isinstance(error, (AccessRefused, PreconditionFailed, NoPermissionError)):
            return True
        error = error.__cause__ or error.__context__
    return False


# What a send returns: Celery's AsyncResult, or with coalescing on a JobResult (thread-safe).
Handle = AsyncResult | JobResult
# The partner-facing jobs a coalescing client gathers, and the batch job each travels in.
COALESCED_INTO = {contract.CHECKIN: contract.CHECKIN_BATCH} | dict.fromkeys(contract.CLAIMS_BATCH_JOBS,
                                                                            contract.CLAIMS_BATCH)


class RewardsClient:
    def __init__(self, broker_url: str | None = None, backend_url: str | None = None, *,
                 settings: settings_module.Settings | None = None, linger_ms: int | None = None,
                 max_batch: int | None = None):
        """URLs default to `settings`, which default to the environment's (rewards.settings).

        `linger_ms` (default REWARDS_CLIENT_LINGER_MS; None: off) turns coalescing
        on: check-ins, task starts and claims, referrals and partner updates
        sent from any number of threads travel as batch messages of up to
        `max_batch` (default REWARDS_BATCH_MAX), and each call returns a
        JobResult (rewards.coalescing).
        """
        current = settings or settings_module.get()
        broker_url = broker_url or current.broker_url
        backend_url = backend_url or current.result_backend
        _refuse_overridden("CELERY_BROKER_URL", broker_url)
        _refuse_overridden("CELERY_RESULT_BACKEND", backend_url)
        settings_module.ensure_broker_folders(current, broker_url)
        self.batch_max = current.batch_max
        self.through_exchange = contract.through_exchanges(broker_url)
        self.app = Celery("rewards-client", broker=broker_url, backend=backend_url)
        # The broker user, stamped on every job as `user_id`: RabbitMQ refuses
        # a message whose user_id is not the publishing user, so an
        # adjustment's audit row can name its operator (workers/adjust.py).
        self.user_id = self.app.connection_for_write().userid or None
        self.app.conf.update(
            task_serializer="json",
            accept_content=["json"],
            result_serializer="json",
            result_accept_content=["json"],
            # No "sent" events and no declarations: a producer writes to its
            # queues' exchanges and nothing else (docs/security.md, "RabbitMQ users").
            task_send_sent_event=False,
            task_queues=[contract.producer_queue(name) for name in contract.QUEUES],
            task_routes=(contract.router(broker_url),),
            broker_connection_retry_on_startup=True,
            # filesystem:// is served by rewards.transport, in producers as in workers.
            broker_transport=settings_module.broker_transport(current, broker_url),
            broker_transport_options=settings_module.broker_transport_options(current, broker_url),
            result_backend_transport_options=settings_module.result_backend_transport_options(current, backend_url),
        )
        linger_ms = current.client_linger_ms if linger_ms is None else linger_ms
        self._results = ResultReader(self.app.backend)
        self._coalescer = None if linger_ms is None else Coalescer(
            self._publish_coalesced, self._results, linger_s=linger_ms / 1000, max_batch=max_batch or self.batch_max)

    def send(self, task_name: str, /, *, ignore_result: bool = False, job_id: str | None = None,
             **kwargs: Any) -> Handle:
        """Enqueue any job of the contract by name on its queue.

        `ignore_result=True` is for producers that never read the result: the
        worker then stores none, which saves it a write to the result backend
        per job (the outcome still lives in PostgreSQL, under its key).

        `job_id` sends a job again under the id it was first sent with, so a
        result already awaited arrives. Send again a job that has no result
        while the broker holds nothing: Redis can lose a message (a worker's
        BRPOP takes it off the queue before it is recorded as unacknowledged,
        and a Redis restart between the two drops it). The idempotency key
        makes a job that did run come back as `duplicate`. A job sent again
        under its id travels alone, coalescing or not.
        """
        if self._coalescer is not None and job_id is None and task_name in COALESCED_INTO:
            kind = COALESCED_INTO[task_name]
            item = kwargs if kind == contract.CHECKIN_BATCH else {"job": task_name, "kwargs": kwargs}
            return self._coalescer.submit(kind, item, ignore_result=ignore_result)
        return self._publish(task_name, kwargs, ignore_result=ignore_result, job_id=job_id)

    def _publish(self, task_name: str, kwargs: dict[str, Any], *, ignore_result: bool,
                 job_id: str | None = None) -> AsyncResult:
        sender = {"user_id": self.user_id} if self.user_id else {}
        try:
            return self.app.send_task(task_name, kwargs=kwargs, ignore_result=ignore_result, task_id=job_id,
                                      headers={contract.SENT_AT_HEADER: time.time()},
                                      **contract.destination(task_name, through_exchange=self.through_exchange),
                                      **sender)
        except Exception as error:
            if _refused_by_broker(error):
                raise NotPermitted(task_name, self.user_id, error) from error
            raise

    def _publish_coalesced(self, kind: str, items: list[dict], ignore_result: bool) -> tuple[str, bool]:
        """One coalesced message: the plain job when it gathered no other, else the batch; (its id, alone)."""
        if len(items) == 1:
            name, kwargs = (contract.CHECKIN, items[0]) if kind == contract.CHECKIN_BATCH else \
                (items[0]["job"], items[0]["kwargs"])
            return self._publish(name, kwargs, ignore_result=ignore_result).id, True
        field = "checkins" if kind == contract.CHECKIN_BATCH else "items"
        return self._publish(kind, {field: items}, ignore_result=ignore_result).id, False

    def checkin(self, partner_id: int, occurred_at: datetime | str | None = None, *,
                ignore_result: bool = False) -> Handle:
        return self.send(contract.CHECKIN, ignore_result=ignore_result, partner_id=partner_id,
                         occurred_at=_instant(occurred_at))

    def checkin_many(self, checkins: Iterable[Mapping[str, Any] | tuple[int, datetime | str | None]], *,
                     ignore_result: bool = False, batch_max: int | None = None) -> list[AsyncResult]:
        """Send many check-ins as `rewards.checkin.batch` messages of up to `batch_max` each.

        Each check-in is `(partner_id, occurred_at)` or `{"partner_id": …,
        "occurred_at": …}`; occurred_at defaults to now. `batch_max` defaults
        to REWARDS_BATCH_MAX, which must not exceed the workers' own. Each
        message's result lists every check-in's outcome in the order sent.
        """
        size = batch_max or self.batch_max
        items = [_checkin_item(checkin) for checkin in checkins]
        return [self._publish(contract.CHECKIN_BATCH, {"checkins": items[start:start + size]},
                              ignore_result=ignore_result) for start in range(0, len(items), size)]

    def claims_many(self, jobs: Iterable[tuple[str, Mapping[str, Any]]], *, ignore_result: bool = False,
                    batch_max: int | None = None) -> list[AsyncResult]:
        """Send many claims-queue jobs as `rewards.claims.batch` messages of up to `batch_max` each.

        Each job is `(name, kwargs)`, its name one of contract.CLAIMS_BATCH_JOBS
        (task start and claim, referral, partner update). They are applied in
        the order given; each message's result lists every job's outcome.
        """
        size = batch_max or self.batch_max
        items = [{"job": name, "kwargs": dict(kwargs)} for name, kwargs in jobs]
        return [self._publish(contract.CLAIMS_BATCH, {"items": items[start:start + size]}, ignore_result=ignore_result)
                for start in range(0, len(items), size)]

    def update_partner(self, partner_id: int, *, pro_until: datetime | str | None = _UNSET,
                       timezone: str = _UNSET, occurred_at: datetime | str | None = None) -> Handle:
        """Set PRO until an instant (None ends PRO) and/or the IANA time zone."""
        kwargs: dict[str, Any] = {"partner_id": partner_id, "occurred_at": _instant(occurred_at)}
        if pro_until is not _UNSET:
            kwargs["pro_until"] = None if pro_until is None else _instant(pro_until)
        if timezone is not _UNSET:
            kwargs["timezone"] = timezone
        return self.send(contract.PARTNER_UPDATE, **kwargs)

    def start_task(self, partner_id: int, task_id: str,
                   occurred_at: datetime | str | None = None) -> Handle:
        return self.send(contract.TASK_START, partner_id=partner_id, task_id=task_id,
                         occurred_at=_instant(occurred_at))

    def claim_task(self, partner_id: int, task_id: str,
                   occurred_at: datetime | str | None = None) -> Handle:
        return self.send(contract.TASK_CLAIM, partner_id=partner_id, task_id=task_id,
                         occurred_at=_instant(occurred_at))

    def record_referral(self, referrer_id: int, referee_id: int,
                        occurred_at: datetime | str | None = None) -> Handle:
        return self.send(contract.REFERRAL_RECORD, referrer_id=referrer_id, referee_id=referee_id,
                         occurred_at=_instant(occurred_at))

    def adjust(self, partner_id: int, amount: int, reason: str, request_id: str) -> AsyncResult:
        """An operator's grant (amount > 0) or deduction (< 0); replaying request_id applies it once."""
        return self.send(contract.ADJUST, partner_id=partner_id, amount=amount, reason=reason,
                         request_id=request_id)

    def outcome(self, key: str) -> dict[str, Any] | None:
        """The outcome PostgreSQL holds for an idempotency key, or None if no job applied it yet.

        For a producer whose result never arrived (the result store was down,
        the result expired, the producer restarted): the key is in every
        result (`result["key"]`) and can be rebuilt from the payload
        (rewards.contract.keys). Reads REWARDS_READ_DATABASE_URL (by default REWARDS_DATABASE_URL).
        """
        from rewards import db, queries

        with db.get_read_engine().connect() as conn:
            found = queries.outcome(conn, key)
        if found is None:
            return None
        return {"status": found.status, "key": found.key, "partner_id": found.partner_id, **found.details}

    def close(self) -> None:
        self._results.close()
        self.app.close()
