"""job_failure.payload_text: the exact payload as received, next to its storable JSON form.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26

A nullable column without a default is added from the catalogue alone (no
table rewrite). Workers of the previous release keep writing rows without
it; rows recorded before this migration have no raw form.
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("job_failure", sa.Column("payload_text", sa.Text(), nullable=True))


def downgrade() -> None:
    op.drop_column("job_failure", "payload_text")
