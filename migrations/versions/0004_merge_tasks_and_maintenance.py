"""Join the two branches of the schema: 0002 (tasks, referrals, adjustments) and 0003 (maintenance).

Revision ID: 0004
Revises: 0002, 0003
Create Date: 2026-11-24

Both were written on top of 0001 and touch different tables, so either may
already be applied: `alembic upgrade head` applies whichever is missing, then
this revision, which changes nothing itself.
"""

revision = "0004"
down_revision = ("0002", "0003")
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
