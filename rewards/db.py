"""Engines and transactions, PostgreSQL in production and SQLite embedded.

Everything dialect-specific lives here: session time limits on PostgreSQL,
write-serialising transactions on SQLite. The ledger's statements are plain
SQLAlchemy Core that both dialects compile.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

from sqlalchemy import Connection, Engine, create_engine, event, exc, text
from sqlalchemy.dialects import postgresql

from rewards import settings as settings_module
from rewards.models import metadata

_engines: dict[tuple[int, str, bool], Engine] = {}
_engines_lock = threading.Lock()


def make_engine(url: str, *, statement_timeout_ms: int = 5_000, lock_timeout_ms: int = 2_000,
                connect_timeout_s: int = 5, read_only: bool = False) -> Engine:
    if url.startswith("sqlite"):
        return _sqlite_engine(url)
    connect_args = postgres_connect_args(statement_timeout_ms, lock_timeout_ms, connect_timeout_s)
    if read_only:
        # The server refuses every write on these sessions, whatever the role
        # may do: the read URL defaults to the main one, which can write.
        connect_args["options"] += " -c default_transaction_read_only=on"
    engine = create_engine(
        url,
        connect_args=connect_args,
        pool_size=8,
        max_overflow=8,
        # Waiting for a free pooled connection is bounded like every other wait.
        pool_timeout=connect_timeout_s,
    )
    event.listen(engine, "handle_error", _drop_interrupted_connection)
    if any(f"target_session_attrs={attrs}" in url for attrs in ("prefer-standby", "standby")):
        event.listen(engine, "connect", _note_server_role)
        event.listen(engine, "checkout", _keep_reads_on_a_standby)
    return engine


# A read connection opened on the primary (no standby answered) is replaced after
# this long, so reads return to a standby once one is back.
PRIMARY_READ_CONNECTION_S = 30


def _in_recovery(dbapi_connection) -> bool:
    """Whether the server is a standby, asked outside any transaction (the connection is idle)."""
    dbapi_connection.autocommit = True
    try:
        return dbapi_connection.execute("SELECT pg_is_in_recovery()").fetchone()[0]
    finally:
        dbapi_connection.autocommit = False


def _note_server_role(dbapi_connection, record) -> None:
    record.info["standby"] = _in_recovery(dbapi_connection)
    record.info["opened_at"] = time.monotonic()


def _keep_reads_on_a_standby(dbapi_connection, record, _proxy) -> None:
    """Replace a prefer-standby connection whose server is a primary now.

    libpq chooses a standby when the connection opens; a pooled one stays on
    its server. After a failover, the standby that was promoted is the
    primary: its pooled read connections would load it and would hang with it
    if it hung next. One opened on a standby is checked at each checkout (a
    query; the primary's are left alone until PRIMARY_READ_CONNECTION_S).
    """
    if record.info.get("standby"):
        if not _in_recovery(dbapi_connection):
            raise exc.DisconnectionError("the read connection's standby was promoted")
    elif time.monotonic() - record.info.get("opened_at", 0) > PRIMARY_READ_CONNECTION_S:
        raise exc.DisconnectionError("a read connection on the primary is replaced to look for a standby")


def _drop_interrupted_connection(context) -> None:
    """Close a connection whose statement was interrupted by something other than the database.

    A job's soft time limit arrives as an exception raised in the middle of
    a statement. The connection is then mid-protocol, and rolling it back
    means waiting on the very server that may be hung (SIGSTOP, a frozen
    host): treat it as lost instead, so the job can retry at once.
    """
    if not isinstance(context.original_exception, (exc.DBAPIError, context.dialect.loaded_dbapi.Error)):
        context.is_disconnect = True


def postgres_connect_args(statement_timeout_ms: int, lock_timeout_ms: int,
                          connect_timeout_s: int) -> dict[str, object]:
    """libpq options that bound every wait on PostgreSQL, so a hung server never freezes a worker.

    Time limits ride on the connection's start-up options, so they cost
    nothing per transaction; a job stuck on a lock fails fast and retries.
    `connect_timeout` bounds a connection attempt to a server that does not
    answer; keepalives find a silent peer on an idle connection, and
    `tcp_user_timeout` drops one whose sent data stays unacknowledged (a
    frozen or unplugged server), which a statement timeout cannot do because
    the server is the one that enforces it.
    """
    timeout_ms = connect_timeout_s * 1000
    return {
        "options": f"-c statement_timeout={statement_timeout_ms} -c lock_timeout={lock_timeout_ms}",
        "application_name": "rewards",
        "connect_timeout": connect_timeout_s,
        "keepalives": 1,
        "keepalives_idle": max(1, connect_timeout_s),
        "keepalives_interval": max(1, connect_timeout_s // 2),
        "keepalives_count": 3,
        "tcp_user_timeout": statement_timeout_ms + timeout_ms,
    }


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
    """The engine jobs write through (REWARDS_DATABASE_URL, the worker's role)."""
    return _engine_for(settings_module.get().database_url, read_only=False)


def get_read_engine() -> Engine:
    """The read side's engine (REWARDS_READ_DATABASE_URL, a read-only role): never written through."""
    return _engine_for(settings_module.get().read_database_url, read_only=True)


def get_retention_engine() -> Engine:
    """The engine pruning runs through (REWARDS_RETENTION_DATABASE_URL, the retention role)."""
    return _engine_for(settings_module.get().retention_database_url, read_only=False)


def _engine_for(url: str, *, read_only: bool) -> Engine:
    """The engine of this process, URL and access, created on first use.

    Keyed by pid because a pool must never cross a fork: a prefork worker
    child that inherited its parent's connections would share sockets with it.
    """
    current = settings_module.get()
    # SQLite has no read-only sessions: one file, one engine.
    read_only = read_only and not url.startswith("sqlite")
    key = (os.getpid(), url, read_only)
    engine = _engines.get(key)
    if engine is None:
        with _engines_lock:
            engine = _engines.get(key)
            if engine is None:
                engine = make_engine(
                    url,
                    statement_timeout_ms=current.statement_timeout_ms,
                    lock_timeout_ms=current.lock_timeout_ms,
                    connect_timeout_s=current.connect_timeout_s,
                    read_only=read_only,
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



def writes_in_one_statement(conn: Connection) -> bool:
    """Whether the hot paths may collapse their writes into one data-modifying CTE.

    PostgreSQL runs `WITH … INSERT … UPDATE … INSERT` as one statement, one
    round trip; SQLite has no data-modifying CTEs and no round trips to save
    (it is in-process), so it keeps the plain statement-per-write path.
    The execution option `statement_per_write=True` takes the plain path on
    PostgreSQL too: it is the reference the one-statement writes are tested
    against.
    """
    return conn.dialect.name == "postgresql" and not conn.get_execution_options().get("statement_per_write")


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


def alembic_config(database_url: str | None = None):
    """Alembic's configuration for the migrations shipped with the package."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("migrations")))
    # The option is configparser text, where % starts an interpolation: a
    # percent-encoded password or sslrootcert path must reach Alembic as written.
    url = database_url or settings_module.get().database_url
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def upgrade(revision: str = "head", database_url: str | None = None) -> None:
    """Migrate the database to `revision` (`rewards db upgrade`)."""
    from alembic import command

    command.upgrade(alembic_config(database_url), revision)
