"""PostgreSQL roles (migrations/versions/0009_roles.py): the suite itself runs as the worker's role.

The worker's role does what jobs do and nothing more: the ledger and the
audit trail are append-only by privilege, a check-in is never deleted, and
no job runs DDL. Every table grants something to the worker and the reader,
so a migration that adds a table and forgets its grants turns this red.
"""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import Engine, exc, text

from rewards import db
from rewards import settings as settings_module
from rewards.models import metadata
from tests.support.database import admin_engine
from tests.support.jobs import adjust, at, checkin

GROUPS = ("rewards_worker", "rewards_reader", "rewards_retention")


def public_tables(conn) -> set[str]:
    """The tables of the schema; partitions (audit_event's months) are reached through their parent only."""
    return set(conn.execute(text(
        "SELECT c.relname FROM pg_class AS c JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND NOT c.relispartition")).scalars())


def tables_without(conn, role: str, privilege: str) -> set[str]:
    return {table for table in public_tables(conn) - {"alembic_version"}
            if not conn.execute(text("SELECT has_table_privilege(:role, :table, :privilege)"),
                                {"role": role, "table": table, "privilege": privilege}).scalar_one()}


def refused(engine: Engine, statement: str) -> bool:
    """Whether the server refuses `statement` for lack of privilege; rolled back even if it was not,
    so a broken grant fails the test without damaging the database."""
    with engine.connect() as conn, conn.begin() as transaction:
        try:
            conn.execute(text(statement))
        except exc.ProgrammingError as error:
            return isinstance(error.orig, psycopg.errors.InsufficientPrivilege)
        finally:
            transaction.rollback()
    return False


def member_of(engine: Engine, group: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(text(
            "SELECT pg_has_role(current_user, :group, 'MEMBER') AND NOT rolsuper "
            "FROM pg_roles WHERE rolname = current_user"), {"group": group}).scalar_one()


def test_the_suite_connects_as_members_of_the_groups_and_never_as_a_superuser():
    assert member_of(db.get_engine(), "rewards_worker")
    assert member_of(db.get_read_engine(), "rewards_reader")
    assert member_of(db.get_retention_engine(), "rewards_retention")


def test_every_table_of_the_models_is_migrated_and_nothing_else(admin_conn):
    assert public_tables(admin_conn) - {"alembic_version"} == set(metadata.tables)


@pytest.mark.parametrize("role", ["rewards_worker", "rewards_reader"])
def test_every_table_grants_select_to_the_worker_and_the_reader(admin_conn, role):
    assert tables_without(admin_conn, role, "SELECT") == set()


def test_the_worker_may_take_an_id_from_every_sequence(admin_conn):
    sequences = admin_conn.execute(text("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'"))
    assert {name for name in sequences.scalars()
            if not admin_conn.execute(text("SELECT has_sequence_privilege('rewards_worker', :name, 'USAGE')"),
                                      {"name": name}).scalar_one()} == set()


def test_the_reader_is_granted_no_write_and_retention_nothing_on_the_ledger(admin_conn):
    for privilege in ("INSERT", "UPDATE", "DELETE", "TRUNCATE"):
        assert tables_without(admin_conn, "rewards_reader", privilege) == public_tables(admin_conn) - {
            "alembic_version"}
    assert tables_without(admin_conn, "rewards_retention", "SELECT") >= {"xp_ledger", "partner", "checkin"}


@pytest.mark.parametrize("statement", [
    "DELETE FROM xp_ledger",
    "UPDATE xp_ledger SET description = description",
    "TRUNCATE xp_ledger",
    "DELETE FROM xp_ledger_key",
    "DELETE FROM audit_event",
    "UPDATE audit_event SET payload = payload",
    "DELETE FROM checkin",
    "DELETE FROM partner",
    "DELETE FROM outbox",
    "DELETE FROM job_failure",
    "CREATE TABLE rogue (id integer)",
    "ALTER TABLE partner ADD COLUMN rogue integer",
    "DROP TABLE outbox",
])
def test_the_workers_role_cannot_rewrite_history_or_change_the_schema(client, statement):
    checkin(client, 1301, 0)  # rows to refuse to touch, written by a job as this very role
    assert refused(db.get_engine(), statement)


def test_a_normal_job_still_works_as_the_workers_role(client, conn):
    assert checkin(client, 1302, 0)["status"] == "applied"
    assert adjust(client, 1302, -5, "roles-1302")["status"] == "applied"
    assert conn.execute(text("SELECT xp FROM partner WHERE id = 1302")).scalar_one() == 5


def test_the_readers_role_writes_nothing_even_in_a_writable_session(client):
    checkin(client, 1303, 0)
    engine = db.make_engine(settings_module.get().read_database_url)
    try:
        assert refused(engine, "UPDATE partner SET xp = xp")
        assert refused(engine, "INSERT INTO referral VALUES (1303, 1303, now(), now())")
    finally:
        engine.dispose()


def test_a_read_engine_session_refuses_writes_even_for_a_role_that_may_write(client):
    # The read URL defaults to the main one, whose role can write: the session itself is read-only.
    checkin(client, 1303, 0)
    engine = db.make_engine(admin_engine().url.render_as_string(hide_password=False), read_only=True)
    try:
        with pytest.raises(exc.DBAPIError) as raised, engine.begin() as conn:
            conn.execute(text("UPDATE partner SET xp = xp WHERE id = 1303"))
    finally:
        engine.dispose()
    assert isinstance(raised.value.orig, psycopg.errors.ReadOnlySqlTransaction)


def test_retention_prunes_the_outbox_but_cannot_touch_the_ledger(client):
    checkin(client, 1304, 0)
    assert refused(db.get_retention_engine(), "DELETE FROM xp_ledger")
    assert refused(db.get_retention_engine(), "UPDATE outbox SET attempts = attempts")
    with db.get_retention_engine().begin() as conn:
        conn.execute(text("DELETE FROM outbox WHERE delivered_at < :at"), {"at": at(0)})
