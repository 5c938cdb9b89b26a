"""Read-side indexes: leaderboards without Redis, analytics, the task funnel.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-25

Only indexes, built CONCURRENTLY on PostgreSQL so check-ins keep writing
while they build (outside a transaction, as CREATE INDEX CONCURRENTLY
requires). A build that fails half-way leaves an INVALID index behind: drop
it and run the upgrade again. The previous release never reads these.
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

# name, table, columns, partial-index predicate
_INDEXES = (
    ("ix_partner_xp_board", "partner", ["xp"], "xp > 0"),
    ("ix_partner_streak_board", "partner", ["checkin_streak", "last_checkin_at"], "checkin_streak > 0"),
    ("ix_checkin_day", "checkin", ["day"], None),
    ("ix_xp_ledger_partner_id_occurred_at", "xp_ledger", ["partner_id", "occurred_at"], None),
    ("ix_xp_ledger_occurred_at", "xp_ledger", ["occurred_at"], None),
    ("ix_partner_task_started_at_task_id_status", "partner_task", ["started_at", "task_id", "status"], None),
)


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    with op.get_context().autocommit_block():
        for name, table, columns, where in _INDEXES:
            predicate = sa.text(where) if where else None
            op.create_index(name, table, columns, postgresql_where=predicate, sqlite_where=predicate,
                            postgresql_concurrently=postgres, if_not_exists=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, table, _, _ in reversed(_INDEXES):
            op.drop_index(name, table_name=table, if_exists=True)
