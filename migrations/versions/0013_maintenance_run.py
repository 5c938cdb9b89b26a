"""maintenance_run: each maintenance job's last run, for monitoring.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07

A new table only: the previous release never reads it and keeps running.
The worker and retention roles write their jobs' rows; the reader (beat's
metrics, `rewards status`) reads them.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rewards.models import UtcDateTime

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

Payload = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "maintenance_run",
        sa.Column("job", sa.String(100), primary_key=True),
        sa.Column("last_run_at", UtcDateTime, nullable=False),
        sa.Column("skipped", sa.String(200)),
        sa.Column("done_at", UtcDateTime),
        sa.Column("examined", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("changed", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("more", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("took_ms", sa.Float, nullable=False, server_default=sa.text("0")),
        sa.Column("details", Payload, nullable=False, server_default=sa.text("'{}'")),
    )
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no roles
    op.execute("GRANT SELECT, INSERT, UPDATE ON maintenance_run TO rewards_worker, rewards_retention")
    op.execute("GRANT SELECT ON maintenance_run TO rewards_reader")


def downgrade() -> None:
    op.drop_table("maintenance_run")
