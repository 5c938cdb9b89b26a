"""Engines and transactions, PostgreSQL in production and SQLite embedded.

Everything dialect-specific lives here: session time limits on PostgreSQL,
write-serialising transactions on SQLite. The ledger's statements are plain
SQLAlchemy Core that both dialects compile.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql

from rewards import settings as settings_module
from rewards.models import metadata

_engines: dict[tuple[int, str], Engine] = {}
_engines_lock = threading.Lock()


def make_engine(url: str, *, statement_timeout_ms: int = 5_000, lock_timeout_ms: int = 2_000) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    # Time limits ride on the connection's start-up options, so they cost
    # nothing per transaction; a job stuck on a lock fails fast and retries.
    options = f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}"
    return create_engine(
        url,
        connect_args={"options": options, "application_name": "rewards"},
        pool_size=8,
        max_overflow=8,
    )


def _sqlite_engine(url: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection, _record):
        # Hand transaction control to SQLAlchemy so "begin" below is the only BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection):
        # SQLite has no row locks: take the write lock up front so two worker
        # processes never both read a partner and then collide on upgrade.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def get_engine() -> Engine:
    """The engine of this process and URL, created on first use.

    Keyed by pid because a pool must never cross a fork: a prefork worker
    child that inherited its parent's connections would share sockets with it.
    """
    current = settings_module.get()
    key = (os.getpid(), current.database_url)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = make_engine(
                    current.database_url,
                    statement_timeout_ms=current.statement_timeout_ms,
                    lock_timeout_ms=current.lock_timeout_ms,
                )
                if engine.dialect.name == "sqlite":
                    metadata.create_all(engine)
                _engines[key] = engine
    return engine


@contextmanager
def transaction() -> Iterator[Connection]:
    """One database transaction: committed when the block ends, rolled back on error."""
    with get_engine().begin() as connection:
        yield connection


@contextmanager
def snapshot_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction in which every statement sees the same committed state.

    REPEATABLE READ on PostgreSQL, for readers that compare several tables
    statement by statement (the reconciler); SQLite transactions already see
    one snapshot.
    """
    with engine.connect() as connection:
        if engine.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
        with connection.begin():
            yield connection


def is_transient(error: BaseException) -> bool:
    """Errors worth retrying: the same job may well succeed a moment later.

    Lost connections, serialization failures, deadlocks, lock and statement
    timeouts all surface as OperationalError (psycopg and sqlite3 alike);
    a full connection pool as TimeoutError.
    """
    if isinstance(error, (exc.OperationalError, exc.TimeoutError)):
        return True
    return isinstance(error, exc.DBAPIError) and error.connection_invalidated



def insert_on_conflict(table):
    """An INSERT that takes ON CONFLICT clauses, the idempotency primitive.

    Built with the PostgreSQL construct, which the SQLite compiler renders as
    the same SQL (SQLite 3.24 and later); `tests/integration/test_sqlite.py`
    runs the ledger on SQLite to keep it so.
    """
    return postgresql.insert(table)


def insert_ignoring_conflicts(table, *index_elements: str):
    """INSERT … ON CONFLICT DO NOTHING: a second insert of the same key is a no-op."""
    return insert_on_conflict(table).on_conflict_do_nothing(index_elements=list(index_elements) or None)


def advisory_lock_key(name: str) -> int:
    """A stable signed 64-bit key for a lock name, as pg_try_advisory_lock takes."""
    digest = hashlib.sha256(f"rewards:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def advisory_lock(engine: Engine, name: str) -> Iterator[bool]:
    """Try to hold the lock `name` for the length of the block; yields whether it was got.

    Maintenance jobs run in several short transactions (one per batch), so on
    PostgreSQL this is a session-level lock on a connection of its own, held
    across them and released at the end; if the process dies, the server drops
    the session and the lock with it. Never waits: a second run finds it held
    and skips. On SQLite there is one writer at a time anyway (every
    transaction begins IMMEDIATE) and each job's conditional writes make a
    repeated run harmless, so it always yields True.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = advisory_lock_key(name)
    with engine.connect() as connection:
        connection = connection.execution_options(isolation_level="AUTOCOMMIT")
        acquired = connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar_one()
        try:
            yield bool(acquired)
        finally:
            if acquired:
                _unlock(connection, key)


def _unlock(connection: Connection, key: int) -> None:
    try:
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
    except exc.DBAPIError:
        # The session is what holds the lock: closing it for good releases it.
        connection.invalidate()
        raise

