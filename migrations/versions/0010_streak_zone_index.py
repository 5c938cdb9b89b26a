"""Streak maintenance by time zone: an index on (timezone, last_checkin_day, id) of live streaks.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28

Streak expiry and the at-risk notice look, zone by zone, at only the live
streaks whose last check-in puts them due in that zone's local today, in
(last check-in day, id) order: one index range per zone, however many live
streaks are alive. Built CONCURRENTLY on PostgreSQL so check-ins keep writing
while it builds (outside a transaction, as CREATE INDEX CONCURRENTLY
requires). A build that fails half-way leaves an INVALID index behind: drop
it and run the upgrade again. The previous release never reads it; the
worker's role needs no new grant to use it.
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

NAME = "ix_partner_streak_zone_day"
COLUMNS = ["timezone", "last_checkin_day", "id"]


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    live = sa.text("checkin_streak > 0 AND last_checkin_day IS NOT NULL")
    with op.get_context().autocommit_block():
        op.create_index(NAME, "partner", COLUMNS, postgresql_where=live, sqlite_where=live,
                        postgresql_concurrently=postgres, if_not_exists=True)


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        op.drop_index(NAME, table_name="partner", postgresql_concurrently=postgres, if_exists=True)
