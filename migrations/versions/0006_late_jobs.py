"""Late and reordered jobs: plan history, check-in revisions, the price of a completed attempt.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25

- ``plan_change``: every PRO change by the instant it happened, so PRO at an
  instant no longer depends on which update was processed last. Backfilled
  with each partner's current ``pro_until`` as of ``pro_until_set_at``.
- ``checkin.revision`` and ``checkin.xp_shortfall`` (both 0 for existing rows):
  a re-priced day keeps its current price on its row, and the difference goes
  to the ledger as a correction keyed by the revision.
- ``partner_task.multiplier`` / ``xp_granted`` / ``revision``: what a
  completed attempt pays now, backfilled from its ledger row.

Only additions with defaults and a backfill: workers of the previous release
keep running while this applies. They write no plan_change rows and leave the
new task columns empty, so deploy the new workers right after migrating.
"""

import sqlalchemy as sa
from alembic import op

from rewards.contract import keys
from rewards.models import UtcDateTime

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TASK_KEY = keys.sql(keys.TASK, partner_id="t.partner_id", task_id="t.task_id", attempt="t.attempt")


def upgrade() -> None:
    op.create_table(
        "plan_change",
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True),
        sa.Column("occurred_at", UtcDateTime, primary_key=True),
        sa.Column("pro_until", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    op.execute("INSERT INTO plan_change (partner_id, occurred_at, pro_until, created_at) "
               "SELECT id, pro_until_set_at, pro_until, now() FROM partner WHERE pro_until_set_at IS NOT NULL")
    with op.batch_alter_table("checkin") as table:
        table.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("0")))
        table.add_column(sa.Column("xp_shortfall", sa.BigInteger, nullable=False, server_default=sa.text("0")))
        table.create_check_constraint("revision_not_negative", "revision >= 0")
        table.create_check_constraint("xp_shortfall_not_negative", "xp_shortfall >= 0")
    with op.batch_alter_table("partner_task") as table:
        table.add_column(sa.Column("multiplier", sa.Integer))
        table.add_column(sa.Column("xp_granted", sa.BigInteger))
        table.add_column(sa.Column("revision", sa.Integer, nullable=False, server_default=sa.text("0")))
    op.execute(sa.text(f"""
        UPDATE partner_task t SET multiplier = l.multiplier, xp_granted = l.amount
        FROM xp_ledger l WHERE t.status = 'COMPLETED' AND l.idempotency_key = {_TASK_KEY}
    """))
    op.create_check_constraint("xp_granted_iff_completed", "partner_task",
                               "(status = 'COMPLETED') = (xp_granted IS NOT NULL)")


def downgrade() -> None:
    op.drop_constraint("ck_partner_task_xp_granted_iff_completed", "partner_task", type_="check")
    with op.batch_alter_table("partner_task") as table:
        table.drop_column("revision")
        table.drop_column("xp_granted")
        table.drop_column("multiplier")
    with op.batch_alter_table("checkin") as table:
        table.drop_constraint("ck_checkin_xp_shortfall_not_negative", type_="check")
        table.drop_constraint("ck_checkin_revision_not_negative", type_="check")
        table.drop_column("xp_shortfall")
        table.drop_column("revision")
    op.drop_table("plan_change")
