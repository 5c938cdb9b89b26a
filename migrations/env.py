"""Alembic environment: migrates the database named by REWARDS_DATABASE_URL."""

from alembic import context
from sqlalchemy import create_engine, pool

from rewards import db, settings
from rewards.models import metadata, modelled

config = context.config
target_metadata = metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or settings.get().database_url


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True,
                      include_name=modelled)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _url()
    connect_args = {}
    if url.startswith("postgresql"):
        # A migration must not queue behind live traffic holding locks, nor
        # make live traffic queue behind it: fail fast and try again later.
        # connect_timeout applies per host: with a multi-host URL, a host that
        # does not answer is given up for the next, as the workers do.
        connect_args = db.postgres_connect_args(statement_timeout_ms=600_000, lock_timeout_ms=5_000,
                                                connect_timeout_s=settings.get().connect_timeout_s)
    engine = create_engine(url, poolclass=pool.NullPool, connect_args=connect_args)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=target_metadata,
                          render_as_batch=url.startswith("sqlite"), include_name=modelled)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
