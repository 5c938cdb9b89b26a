"""Tasks, referrals and adjustments: partner_task, referral, adjustment.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25

Only new tables and their indexes: the release before this one never reads
them, so it keeps running while this migration is applied.
"""

import sqlalchemy as sa
from alembic import op

from rewards.models import UtcDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    _create_partner_task()
    _create_referral()
    _create_adjustment()


def _create_partner_task() -> None:
    op.create_table(
        "partner_task",
        # (partner, task, attempt) is the idempotency key of a start and of a claim.
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True),
        sa.Column("task_id", sa.String(64), primary_key=True),
        sa.Column("attempt", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("initial_metric_value", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("start_day", sa.Date, nullable=False),
        sa.Column("started_at", UtcDateTime, nullable=False),
        sa.Column("completed_at", UtcDateTime),
        sa.CheckConstraint("attempt >= 1", name="attempt_positive"),
        sa.CheckConstraint("status IN ('STARTED', 'COMPLETED', 'EXPIRED')", name="status_known"),
        sa.CheckConstraint("initial_metric_value >= 0", name="initial_metric_not_negative"),
        sa.CheckConstraint("(status = 'COMPLETED') = (completed_at IS NOT NULL)",
                           name="completed_at_iff_completed"),
    )
    # At most one attempt per partner and task is not EXPIRED: a new attempt
    # begins only once the previous one has expired.
    op.create_index("ux_partner_task_live_attempt", "partner_task", ["partner_id", "task_id"],
                    unique=True,
                    postgresql_where=sa.text("status <> 'EXPIRED'"),
                    sqlite_where=sa.text("status <> 'EXPIRED'"))
    # A partner's task list by status: the reference document's proposal.
    op.create_index("ix_partner_task_partner_id_status", "partner_task", ["partner_id", "status"])
    # The stale-task sweep (STARTED for more than 7 days -> EXPIRED) reads only
    # STARTED attempts by age; finished attempts stay out of the index.
    op.create_index("ix_partner_task_stale_sweep", "partner_task", ["started_at"],
                    postgresql_where=sa.text("status = 'STARTED'"),
                    sqlite_where=sa.text("status = 'STARTED'"))


def _create_referral() -> None:
    op.create_table(
        "referral",
        # One row per referee: the primary key is the referral's idempotency key.
        sa.Column("referee_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True,
                  autoincrement=False),
        sa.Column("referrer_id", sa.BigInteger, sa.ForeignKey("partner.id"), nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("referee_id <> referrer_id", name="not_self_referral"),
    )
    # A referrer's referrals, and the reconciler's count of them.
    op.create_index("ix_referral_referrer_id", "referral", ["referrer_id"])


def _create_adjustment() -> None:
    op.create_table(
        "adjustment",
        sa.Column("request_id", sa.String(100), primary_key=True),
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("reason", sa.String(200), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("rejection_reason", sa.String(64)),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
        sa.CheckConstraint("status IN ('applied', 'rejected')", name="status_known"),
        sa.CheckConstraint("(status = 'rejected') = (rejection_reason IS NOT NULL)",
                           name="rejection_reason_iff_rejected"),
    )
    op.create_index("ix_adjustment_partner_id", "adjustment", ["partner_id"])


def downgrade() -> None:
    for table in ("adjustment", "referral", "partner_task"):
        op.drop_table(table)
