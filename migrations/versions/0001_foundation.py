"""Foundation: partner, checkin, xp_ledger, audit_event, job_failure.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

The first release: nothing runs before it.
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from rewards.models import UtcDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

Payload = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
SerialId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "partner",
        sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("xp", sa.BigInteger, nullable=False, server_default=sa.text("0")),
        sa.Column("checkin_streak", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("longest_streak", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_checkin_day", sa.Date),
        sa.Column("last_checkin_at", UtcDateTime),
        sa.Column("total_checkins", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("referral_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("pro_until", UtcDateTime),
        sa.Column("pro_until_set_at", UtcDateTime),
        sa.Column("timezone", sa.String(64), nullable=False, server_default=sa.text("'UTC'")),
        sa.Column("timezone_set_at", UtcDateTime),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.Column("updated_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("id > 0", name="id_positive"),
        sa.CheckConstraint("xp >= 0", name="xp_not_negative"),
        sa.CheckConstraint("checkin_streak >= 0", name="streak_not_negative"),
        sa.CheckConstraint("longest_streak >= checkin_streak", name="longest_covers_current"),
        sa.CheckConstraint("referral_count >= 0", name="referral_count_not_negative"),
    )
    # Streak expiry scans live streaks whose last check-in is old: a partial
    # index on last_checkin_day over checkin_streak > 0 keeps partners with
    # no streak (most of them, over time) out of that scan entirely. It
    # replaces the reference document's partner(last_checkin_at, checkin_streak).
    op.create_index("ix_partner_streak_expiry", "partner", ["last_checkin_day"],
                    postgresql_where=sa.text("checkin_streak > 0"),
                    sqlite_where=sa.text("checkin_streak > 0"))

    op.create_table(
        "checkin",
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), primary_key=True),
        sa.Column("day", sa.Date, primary_key=True),
        sa.Column("streak", sa.Integer, nullable=False),
        sa.Column("base_xp", sa.Integer, nullable=False),
        sa.Column("bonus_xp", sa.Integer, nullable=False),
        sa.Column("multiplier", sa.Integer, nullable=False),
        sa.Column("xp_granted", sa.Integer, nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("frozen_days", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("streak >= 1", name="streak_positive"),
        sa.CheckConstraint("xp_granted = (base_xp + bonus_xp) * multiplier", name="xp_granted_priced"),
    )
    # (partner_id, day) is the primary key: the idempotency key of a check-in,
    # and the index a partner's streak calendar reads.

    op.create_table(
        "xp_ledger",
        sa.Column("id", SerialId, primary_key=True, autoincrement=True),
        sa.Column("partner_id", sa.BigInteger, sa.ForeignKey("partner.id"), nullable=False),
        sa.Column("entry_type", sa.String(32), nullable=False),
        sa.Column("base_amount", sa.BigInteger, nullable=False),
        sa.Column("multiplier", sa.Integer, nullable=False),
        sa.Column("amount", sa.BigInteger, nullable=False),
        sa.Column("balance_after", sa.BigInteger, nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=False, unique=True),
        sa.Column("rule_version", sa.String(64), nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("occurred_at", UtcDateTime, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
        sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
        sa.CheckConstraint("multiplier >= 1", name="multiplier_positive"),
        sa.CheckConstraint("amount = base_amount * multiplier", name="amount_priced"),
        sa.CheckConstraint("balance_after >= 0", name="balance_not_negative"),
        sa.CheckConstraint(
            "entry_type IN ('checkin', 'streak_bonus', 'task_reward', 'adjustment', 'correction')",
            name="entry_type_known",
        ),
    )
    # A partner's history (newest first) and the reconciler's walk along each
    # partner's balance_after chain read one partner's rows in id order. This
    # adapts the reference document's earning(partner_id, type, created_at):
    # ids are already in time order, and per-type totals scan regardless.
    op.create_index("ix_xp_ledger_partner_id_id", "xp_ledger", ["partner_id", "id"])

    op.create_table(
        "audit_event",
        sa.Column("id", SerialId, primary_key=True, autoincrement=True),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("partner_id", sa.BigInteger),
        sa.Column("payload", Payload, nullable=False),
        sa.Column("created_at", UtcDateTime, nullable=False),
    )
    # An operator looking into one partner reads their events in order.
    op.create_index("ix_audit_event_partner_id_id", "audit_event", ["partner_id", "id"])

    op.create_table(
        "job_failure",
        sa.Column("id", SerialId, primary_key=True, autoincrement=True),
        sa.Column("fingerprint", sa.String(64), nullable=False, unique=True),
        sa.Column("task_name", sa.String(200), nullable=False),
        sa.Column("task_id", sa.String(64)),
        sa.Column("payload", Payload, nullable=False),
        sa.Column("reason", sa.String(64), nullable=False),
        sa.Column("error", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("1")),
        sa.Column("first_seen_at", UtcDateTime, nullable=False),
        sa.Column("last_seen_at", UtcDateTime, nullable=False),
    )
    # Operators list the newest failures first.
    op.create_index("ix_job_failure_last_seen_at", "job_failure", ["last_seen_at"])


def downgrade() -> None:
    for table in ("job_failure", "audit_event", "xp_ledger", "checkin", "partner"):
        op.drop_table(table)
