"""The Alembic migrations build exactly the schema rewards/models.py describes."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from rewards.models import metadata


def test_the_migrated_database_matches_the_models(conn):
    context = MigrationContext.configure(conn, opts={"compare_type": True, "compare_server_default": True})
    assert compare_metadata(context, metadata) == []
