"""The migrated PostgreSQL schema is the one rewards.models describes (which also builds SQLite)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import CheckConstraint, inspect

from rewards.models import metadata


def test_the_migrations_create_exactly_the_tables_columns_and_indexes_of_the_models(conn):
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    assert compare_metadata(context, metadata) == []


def test_the_migrations_create_every_check_constraint_and_partial_index_of_the_models(conn):
    inspector = inspect(conn)
    for table in metadata.sorted_tables:
        migrated_checks = {check["name"] for check in inspector.get_check_constraints(table.name)}
        modelled_checks = {constraint.name for constraint in table.constraints
                           if isinstance(constraint, CheckConstraint)}
        assert migrated_checks == modelled_checks, table.name
        migrated_partial = {index["name"] for index in inspector.get_indexes(table.name)
                            if index.get("dialect_options", {}).get("postgresql_where") is not None}
        modelled_partial = {index.name for index in table.indexes
                            if index.dialect_options["postgresql"]["where"] is not None}
        assert migrated_partial == modelled_partial, table.name
