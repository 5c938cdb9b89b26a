"""Coalescing: partner-facing jobs sent from many threads travel as batch messages.

An app that sends one check-in or claim per user action, from many threads
of one process, calls the client as before; with coalescing on
(REWARDS_CLIENT_LINGER_MS, or `RewardsClient(linger_ms=…)`), jobs bound for
the same queue are gathered into one `rewards.checkin.batch` or
`rewards.claims.batch` message:

- the first job of a batch waits `linger_ms` (0: not at all) and for the
  previous batch of its kind to be published; every job sent meanwhile
  joins it, up to `max_batch`, the Kafka producer's idea. A lone sender
  therefore waits for nothing, and a job that finds nobody to join it
  travels alone, as the plain job.
- every call returns only once its message is on the broker (publisher
  confirms on RabbitMQ), or raises if it could not be sent: a process that
  dies before the flush has returned no handle for the jobs it held, exactly
  as if it had died before sending them.
- each call gets its own `JobResult`, which resolves to that job's own
  result, as the job sent alone would have answered.

Celery's AsyncResult.get() is not safe to call from several threads at once
with the Redis result backend (celery/celery#4480, #6335), which is how such
an app waits; a JobResult is: one thread of the client reads every awaited
result with one MGET per poll.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import datetime
from dataclasses import dataclass, field
from typing import Any

from celery import states
from celery.exceptions import TimeoutError as ResultTimeout

# How often the result reader asks Redis for the results awaited, while any are.
POLL_S = 0.002


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    meta: dict | None = None


class ResultReader:
    """Reads the awaited results of one Celery app for any number of threads: one MGET per poll."""

    def __init__(self, backend) -> None:
        self._backend = backend
        self._lock = threading.Lock()
        self._awaited: dict[str, list[_Waiter]] = {}
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def wait(self, message_id: str, timeout_s: float | None) -> dict:
        """The message's result meta once it is ready (SUCCESS, FAILURE…); ResultTimeout after `timeout_s`."""
        waiter = _Waiter()
        with self._lock:
            self._awaited.setdefault(message_id, []).append(waiter)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="rewards-results", daemon=True)
                self._thread.start()
        self._wake.set()
        if waiter.done.wait(timeout_s):
            return waiter.meta
        with self._lock:
            waiters = self._awaited.get(message_id, [])
            if waiter in waiters:
                waiters.remove(waiter)
                if not waiters:
                    del self._awaited[message_id]
        if waiter.meta is not None:  # it arrived as the wait ended
            return waiter.meta
        raise ResultTimeout(f"the result of {message_id} did not arrive within {timeout_s} s")

    def peek(self, message_id: str) -> dict | None:
        """The message's result meta if it is ready now, without waiting."""
        meta = self._backend.get_task_meta(message_id)
        return meta if meta["status"] in states.READY_STATES else None

    def _run(self) -> None:
        while not self._closed:
            with self._lock:
                ids = list(self._awaited)
            if not ids:
                self._wake.wait()
                self._wake.clear()
                continue
            try:
                self._read(ids)
            except Exception:  # noqa: BLE001 - Redis may blink; each waiter's own timeout bounds its wait
                time.sleep(POLL_S * 50)
            time.sleep(POLL_S)

    def _read(self, ids: list[str]) -> None:
        values = self._backend.mget([self._backend.get_key_for_task(message_id) for message_id in ids])
        for message_id, value in zip(ids, values):
            if value is None:
                continue
            meta = self._backend.decode_result(value)
            if meta["status"] not in states.READY_STATES:
                continue
            with self._lock:
                waiters = self._awaited.pop(message_id, [])
            for waiter in waiters:
                waiter.meta = meta
                waiter.done.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()


class JobResult:
    """One job's result: alone in its message, or item `index` of a batch message's result.

    `get()` returns the dict the job sent alone would have returned; a batch
    rejected whole (over the workers' REWARDS_BATCH_MAX) answers that
    rejection for each of its jobs.
    """

    def __init__(self, reader: ResultReader, message_id: str, index: int | None, ignore_result: bool) -> None:
        self._reader = reader
        self.message_id = message_id
        self.index = index  # None: the job travelled alone
        self._ignore_result = ignore_result
        self._meta: dict | None = None

    @property
    def id(self) -> str:
        return self.message_id if self.index is None else f"{self.message_id}#{self.index}"

    def ready(self) -> bool:
        return self._reader.peek(self.message_id) is not None

    def get(self, timeout: float | None = None) -> dict[str, Any]:
        if self._ignore_result:
            raise ValueError(f"job {self.id} was sent with ignore_result=True: no result will be stored")
        meta = self._meta = self._reader.wait(self.message_id, timeout)
        if meta["status"] != states.SUCCESS:
            raise RuntimeError(f"job {self.id} failed ({meta['status']}): {meta.get('result')}")
        result = meta["result"]
        if self.index is None or "items" not in result:
            return result
        return result["items"][self.index]

    @property
    def date_done(self) -> datetime | None:
        """When the worker stored the message's result, just after its commit; known once get() returned."""
        done = self._meta.get("date_done") if self._meta else None
        return datetime.fromisoformat(done) if isinstance(done, str) else done

    def __repr__(self) -> str:
        return f"<JobResult {self.id}>"


@dataclass
class _Batch:
    items: list[dict] = field(default_factory=list)
    ignore_results: list[bool] = field(default_factory=list)
    full: threading.Event = field(default_factory=threading.Event)
    sent: threading.Event = field(default_factory=threading.Event)
    message_id: str | None = None
    travelled_alone: bool = False
    error: BaseException | None = None


# (kind, items, ignore_result) -> (the message id, whether it carried one job as the plain job);
# `kind` is the batch job's name.
Publish = Callable[[str, list[dict], bool], tuple[str, bool]]


class Coalescer:
    """Gathers jobs of the same kind sent within the linger, or while the previous batch was published."""

    def __init__(self, publish: Publish, reader: ResultReader, *, linger_s: float, max_batch: int) -> None:
        self._publish = publish
        self._reader = reader
        self.linger_s = linger_s
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._open: dict[str, _Batch] = {}
        self._publishing: dict[str, threading.Lock] = {}

    def submit(self, kind: str, item: dict, *, ignore_result: bool) -> JobResult:
        with self._lock:
            batch = self._open.get(kind)
            leader = batch is None
            if leader:
                batch = self._open[kind] = _Batch()
                publishing = self._publishing.setdefault(kind, threading.Lock())
            index = len(batch.items)
            batch.items.append(item)
            batch.ignore_results.append(ignore_result)
            if len(batch.items) >= self.max_batch:
                del self._open[kind]  # the next job opens a new batch
                batch.full.set()
        if leader:
            self._lead(kind, batch, publishing)
        else:
            batch.sent.wait()
        if batch.error is not None:
            raise batch.error
        return JobResult(self._reader, batch.message_id, None if batch.travelled_alone else index, ignore_result)

    def _lead(self, kind: str, batch: _Batch, publishing: threading.Lock) -> None:
        """Wait out the linger and the batch in flight, close the batch, publish it, wake its jobs."""
        try:
            if self.linger_s:
                batch.full.wait(self.linger_s)
            with publishing:
                with self._lock:
                    if self._open.get(kind) is batch:
                        del self._open[kind]
                batch.message_id, batch.travelled_alone = self._publish(kind, batch.items, all(batch.ignore_results))
        except BaseException as error:
            batch.error = error
            raise
        finally:
            batch.sent.set()
