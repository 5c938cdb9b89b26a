"""Races forced, not hoped for: the test holds a lock, sees who queues behind it, then lets go.

A concurrency test that merely starts two things together proves nothing
when they happen to run one after the other. Here the test takes a row lock
(or the very lock a job waits on) in a transaction of its own, waits until
PostgreSQL itself reports the competing work queued behind that transaction
(`pg_blocking_pids`), and only then commits, so every queued party contends
at once and the test can assert that they did.

The competing work runs in threads or worker processes whose sessions wait on
locks for `PATIENT_WAIT_MS`, far longer than the suite's lock timeout: a job
that gave up and retried while the test held the lock would blur the order
the test set up.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, exc, text

from rewards import db
from rewards import settings as settings_module
from tests.support.database import admin_engine

# How long a held-up session waits on a lock, and how long a test waits for
# the work it holds up to queue: both far beyond what the work needs.
PATIENT_WAIT_MS = 30_000
QUEUE_WAIT_S = 30.0

# Every backend waiting, directly or behind another waiter, on `holder`:
# the first waiter on a row is blocked by the holder, later ones by the
# waiter ahead of them in the row's queue.
_WAITING_BEHIND = text("""
WITH RECURSIVE behind(pid) AS (
    SELECT pid FROM pg_stat_activity
    WHERE datname = current_database() AND :holder = ANY(pg_blocking_pids(pid))
  UNION
    SELECT a.pid FROM pg_stat_activity AS a JOIN behind AS b ON b.pid = ANY(pg_blocking_pids(a.pid))
    WHERE a.datname = current_database()
)
SELECT pid FROM behind ORDER BY pid
""")


@lru_cache(maxsize=1)
def patient_engine() -> Engine:
    """The jobs' role (REWARDS_DATABASE_URL), with lock and statement timeouts long enough to be held up."""
    return db.make_engine(settings_module.get().database_url, statement_timeout_ms=PATIENT_WAIT_MS,
                          lock_timeout_ms=PATIENT_WAIT_MS)


@dataclass
class Holder:
    """A transaction of the test's that holds locks until its block ends; `pid` is its backend."""

    conn: Connection
    pid: int

    def wait_for_waiters(self, count: int, what: str, alive: Callable[[], str | None] = lambda: None,
                         timeout_s: float = QUEUE_WAIT_S) -> list[int]:
        """Wait until `count` backends queue behind this transaction; fail with `what` if they never do.

        `alive` returns why the waiting is pointless (a worker died, a thread
        failed), or None; it is checked on every poll so a dead party fails
        the test at once instead of at the deadline.
        """
        deadline = time.monotonic() + timeout_s
        waiting: list[int] = []
        while time.monotonic() < deadline:
            waiting = waiting_behind(self.pid)
            if len(waiting) >= count:
                return waiting
            problem = alive()
            if problem:
                raise AssertionError(f"waiting for {what}: {problem}")
            time.sleep(0.05)
        raise AssertionError(f"waiting for {what}: after {timeout_s} s only {len(waiting)} of {count} "
                             f"sessions were queued behind the test's lock\n{alive() or ''}")


@contextmanager
def holding(sql: str, **params: Any) -> Iterator[Holder]:
    """Run `sql` (a `SELECT … FOR UPDATE`, or a lock function) as the owner and hold what it locked.

    The locks are released when the block ends, by commit.
    """
    with admin_engine().connect() as conn:
        with conn.begin():
            pid = conn.execute(text("SELECT pg_backend_pid()")).scalar_one()
            locked = conn.execute(text(sql), params).fetchall()
            assert locked, f"the test meant to lock rows but {sql!r} matched none"
            yield Holder(conn, pid)


@contextmanager
def holding_partners(*partner_ids: int) -> Iterator[Holder]:
    """Hold these partners' rows as every job of theirs would (FOR UPDATE), until the block ends."""
    with holding("SELECT id FROM partner WHERE id = ANY(:ids) ORDER BY id FOR UPDATE",
                 ids=list(partner_ids)) as holder:
        yield holder


def backend_pid(conn: Connection) -> int:
    return conn.execute(text("SELECT pg_backend_pid()")).scalar_one()


def waiting_behind(pid: int) -> list[int]:
    """Backends queued, directly or behind another waiter, on the transaction of backend `pid`."""
    with admin_engine().connect() as watcher:
        return list(watcher.execute(_WAITING_BEHIND, {"holder": pid}).scalars())


def blocked_by(pid: int) -> list[int]:
    """The backends `pid` waits on right now (PostgreSQL's pg_blocking_pids)."""
    with admin_engine().connect() as watcher:
        return list(watcher.execute(text("SELECT unnest(pg_blocking_pids(:pid))"), {"pid": pid}).scalars())


def advisory_lock_holders(name: str) -> list[int]:
    """Backends holding the advisory lock `name` (rewards.db.advisory_lock), as pg_locks shows them.

    A bigint key appears in pg_locks split in two: its high half as
    `classid`, its low half as `objid`, with `objsubid` 1.
    """
    key = db.advisory_lock_key(name) & 0xFFFF_FFFF_FFFF_FFFF
    with admin_engine().connect() as watcher:
        return list(watcher.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid::bigint = :high AND objid::bigint = :low AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database())"),
            {"high": key >> 32, "low": key & 0xFFFF_FFFF}).scalars())


def without_waiting(what: str, work: Callable[[], Any]) -> Any:
    """Run `work`, which must not queue on the locks the test holds; fail plainly if it did.

    The session has the suite's short lock timeout, so work that went for a
    held row ends in a lock timeout, reported here as what it means.
    """
    try:
        return work()
    except exc.OperationalError as error:
        raise AssertionError(f"{what} waited on a lock the test holds instead of keeping clear of it: "
                             f"{error.orig!r}") from error


@dataclass
class Background:
    """Work started on a thread of its own; `result()` joins it, bounded, and re-raises its error."""

    name: str
    work: Callable[[], Any]
    _thread: threading.Thread = field(init=False)
    _outcome: list = field(init=False, default_factory=list)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._outcome.append(("value", self.work()))
        except BaseException as error:  # noqa: BLE001 - handed to the test by result()
            self._outcome.append(("error", error))

    def failed(self) -> str | None:
        """Why this work ended early, if it did: for `wait_for_waiters`."""
        if self._outcome and self._outcome[0][0] == "error":
            return f"{self.name} failed: {self._outcome[0][1]!r}"
        if self._outcome:
            return f"{self.name} already finished without waiting: {self._outcome[0][1]!r}"
        return None

    def result(self, timeout_s: float = QUEUE_WAIT_S) -> Any:
        self._thread.join(timeout_s)
        assert not self._thread.is_alive(), f"{self.name} did not finish within {timeout_s} s"
        kind, value = self._outcome[0]
        if kind == "error":
            raise value
        return value
