"""Maintenance: streak_freeze, partner_badge, outbox, maintenance_checkpoint.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-24

Only new tables, so the previous release keeps running while this applies:
it never reads them. Badges are backfilled from longest_streak, because the
check-in path awards a badge on the day a streak reaches its threshold and a
partner already past it would otherwise never get it. A partner who reaches a
threshold between this migration and the new workers starting is not
backfilled: deploy the workers right after migrating.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rewards.models import UtcDateTime

revision = "0003"
down_revision = "0001"
branch_labels = None
depends_on = None

Payload = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SerialId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# The badges as rewards.rules.STREAK_BADGES had them when this migration was written.
_BADGES = ((7, "consistency_champion"), (30, "elite_operator"), (100, "legendary_status"))


def upgrade() -> None:
    op.create_table(
        "streak_freeze",
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True),
        sa.Column("iso_week", sa.String(10), primary_key=True),
        sa.Column("frozen_day", sa.Date, nullable=False),
        sa.Column("checkin_day", sa.Date, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("checkin_day > frozen_day", name="bridges_to_a_later_checkin"),
    )

    op.create_table(
        "partner_badge",
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True),
        sa.Column("badge", sa.String(64), primary_key=True),
        sa.Column("streak_days", sa.Integer, nullable=False),
        sa.Column("checkin_day", sa.Date),
        sa.Column("awarded_at", UtcDateTime, nullable=False),
    )
    for threshold_days, badge in _BADGES:
        op.execute(sa.text(
            "INSERT INTO partner_badge (partner_id, badge, streak_days, checkin_day, awarded_at) "
            "SELECT id, :badge, :threshold_days, NULL, CURRENT_TIMESTAMP FROM partner "
            "WHERE longest_streak >= :threshold_days"
        ).bindparams(badge=badge, threshold_days=threshold_days))

    op.create_table(
        "outbox",
        sa.Column("id", SerialId, primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.Uuid, nullable=False, unique=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.BigInteger),
        sa.Column("payload", Payload, nullable=False),
        sa.Column("idempotency_key", sa.String(200), unique=True),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("next_attempt_at", UtcDateTime, nullable=False),
        sa.Column("delivered_at", UtcDateTime),
        sa.Column("last_error", sa.Text),
        sa.CheckConstraint("attempts >= 0", name="attempts_not_negative"),
    )
    # The relay claims the oldest due undelivered events; delivered ones stay
    # out of this index. Pruning reads the second one.
    op.create_index("ix_outbox_pending", "outbox", ["next_attempt_at", "id"],
                    postgresql_where=sa.text("delivered_at IS NULL"),
                    sqlite_where=sa.text("delivered_at IS NULL"))
    op.create_index("ix_outbox_delivered_at", "outbox", ["delivered_at"],
                    postgresql_where=sa.text("delivered_at IS NOT NULL"),
                    sqlite_where=sa.text("delivered_at IS NOT NULL"))

    op.create_table(
        "maintenance_checkpoint",
        sa.Column("job", sa.String(100), primary_key=True),
        sa.Column("position", sa.BigInteger, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
    )


def downgrade() -> None:
    for table in ("maintenance_checkpoint", "outbox", "partner_badge", "streak_freeze"):
        op.drop_table(table)
