"""The schema: every table, key and CHECK the engine relies on.

Tables (names and columns are a contract: operators' reports query them):

- ``partner``      one row per upstream user: balance, streak state, PRO, time zone.
- ``checkin``      one row per partner per local day; its primary key is the
                   check-in's idempotency key. It holds the day's current
                   price: a late check-in or PRO change that re-prices a day
                   updates it and posts the difference as a correction.
- ``plan_change``  every PRO change upstream made, by when it happened: PRO at
                   an instant is decided by the latest change before it.
- ``partner_task`` one row per attempt at a catalogue task (STARTED, then
                   COMPLETED or EXPIRED); at most one attempt per partner and
                   task is not EXPIRED.
- ``referral``     one row per referee: who referred them (the first referrer wins).
- ``adjustment``   one row per operator request_id: the grant or deduction asked
                   for and whether it was applied.
- ``xp_ledger``    one row per XP movement, never updated or deleted.
- ``audit_event``  what happened, including rejected jobs, as JSON.
- ``job_failure``  jobs that could not be applied (poison payloads, retries
                   exhausted), one row per distinct job, counting attempts.
- ``streak_freeze`` one row per freeze a PRO partner used; its key allows one
                   per partner per ISO week.
- ``partner_badge`` the streak badges a partner holds, one row per badge.
- ``outbox``       events for upstream, written in the transaction of the
                   change they report, delivered at least once by the relay.
- ``maintenance_checkpoint`` how far an incremental maintenance job got.

Invariants (DESIGN.md section 5), held by the database as well as the code:

1. ``partner.xp == SUM(xp_ledger.amount)`` and the partner's last
   ``balance_after`` equals ``xp`` (written in one transaction; checked by
   ``tests/support/invariants.py`` and the reconciler). Each check-in's ledger
   rows (payment, bonus, corrections) add up to its ``xp_granted`` plus any
   ``xp_shortfall``; each completed attempt's to its ``xp_granted``.
2. Each idempotency key is applied at most once: ``checkin`` primary key,
   ``partner_task`` primary key (partner, task, attempt) and the conditional
   STARTED -> COMPLETED update, ``referral`` primary key (referee),
   ``adjustment`` primary key (request_id), and each ledger row's
   ``idempotency_key`` once: the ``xp_ledger_key`` primary key, filled by a
   trigger on ``xp_ledger``.
3. ``xp >= 0`` and ``balance_after >= 0`` (CHECK); ledger amounts are never
   zero and always ``base_amount * multiplier`` (CHECK).
4. ``referral_count`` equals the referrals recorded for the referrer (both
   written in one transaction).
5. Every ``task_reward`` ledger row pays one COMPLETED ``partner_task``
   attempt, and every COMPLETED attempt is paid exactly once.

Each freeze, badge and keyed outbox event exists at most once (primary keys
and UNIQUE), however often the job that wrote it is delivered.

The same metadata creates the SQLite file of the embedded default; the
Alembic migrations create the PostgreSQL schema, and a test keeps the two equal.
"""

from __future__ import annotations

from datetime import datetime, timezone

from sqlalchemy import (
    DDL,
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    Uuid,
    event,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UtcDateTime(TypeDecorator):
    """An instant, always handed back as an aware UTC datetime.

    PostgreSQL keeps `timestamptz`; SQLite keeps text without an offset, so
    values are normalised to UTC on the way in and re-labelled on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given for a UTC column")
        return value.astimezone(timezone.utc)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value.astimezone(timezone.utc)


# SQLite only auto-increments a column declared exactly INTEGER PRIMARY KEY.
SerialId = BigInteger().with_variant(Integer(), "sqlite")
Payload = JSON().with_variant(JSONB(), "postgresql")

ENTRY_TYPES = ("checkin", "streak_bonus", "task_reward", "adjustment", "correction")
TASK_STATUSES = ("STARTED", "COMPLETED", "EXPIRED")
ADJUSTMENT_STATUSES = ("applied", "rejected")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


partner = Table(
    "partner",
    metadata,
    Column("id", BigInteger, primary_key=True, autoincrement=False),
    Column("xp", BigInteger, nullable=False, server_default=text("0")),
    Column("checkin_streak", Integer, nullable=False, server_default=text("0")),
    Column("longest_streak", Integer, nullable=False, server_default=text("0")),
    Column("last_checkin_day", Date),
    Column("last_checkin_at", UtcDateTime),
    Column("total_checkins", Integer, nullable=False, server_default=text("0")),
    Column("referral_count", Integer, nullable=False, server_default=text("0")),
    Column("pro_until", UtcDateTime),
    # When the upstream app set each field: a partner update older than these
    # changes nothing (last write by occurred_at wins, field by field).
    Column("pro_until_set_at", UtcDateTime),
    Column("timezone", String(64), nullable=False, server_default=text("'UTC'")),
    Column("timezone_set_at", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    CheckConstraint("id > 0", name="id_positive"),
    CheckConstraint("xp >= 0", name="xp_not_negative"),
    CheckConstraint("checkin_streak >= 0", name="streak_not_negative"),
    CheckConstraint("longest_streak >= checkin_streak", name="longest_covers_current"),
    CheckConstraint("referral_count >= 0", name="referral_count_not_negative"),
)
# Streak expiry looks for live streaks whose last check-in is old; partners
# with no streak never need looking at, so they stay out of the index.
Index(
    "ix_partner_streak_expiry",
    partner.c.last_checkin_day,
    postgresql_where=partner.c.checkin_streak > 0,
    sqlite_where=partner.c.checkin_streak > 0,
)
# Expiry and the at-risk notice walk live streaks zone by zone, each zone's
# due ones being one range of last check-in days (its local today decides),
# in (day, id) order so a run can stop anywhere and the next carry on there.
# A live streak always has a last day; saying so keeps the read side's plain
# `checkin_streak > 0` queries on their own index rather than this wider one.
_LIVE_STREAK_WITH_A_DAY = (partner.c.checkin_streak > 0) & partner.c.last_checkin_day.isnot(None)
Index(
    "ix_partner_streak_zone_day",
    partner.c.timezone,
    partner.c.last_checkin_day,
    partner.c.id,
    postgresql_where=_LIVE_STREAK_WITH_A_DAY,
    sqlite_where=_LIVE_STREAK_WITH_A_DAY,
)
# The read side's leaderboards when Redis is away (rewards.leaderboards): the
# top of a board and the count of partners ahead of one are index ranges.
# Partners with nothing to show stay out, as they stay off the boards.
Index("ix_partner_xp_board", partner.c.xp,
      postgresql_where=partner.c.xp > 0, sqlite_where=partner.c.xp > 0)
Index("ix_partner_streak_board", partner.c.checkin_streak, partner.c.last_checkin_at,
      postgresql_where=partner.c.checkin_streak > 0, sqlite_where=partner.c.checkin_streak > 0)

checkin = Table(
    "checkin",
    metadata,
    Column("partner_id", BigInteger, ForeignKey("partner.id"), primary_key=True),
    Column("day", Date, primary_key=True),
    Column("streak", Integer, nullable=False),
    Column("base_xp", Integer, nullable=False),
    Column("bonus_xp", Integer, nullable=False),
    Column("multiplier", Integer, nullable=False),
    Column("xp_granted", Integer, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("frozen_days", Integer, nullable=False, server_default=text("0")),
    Column("created_at", UtcDateTime, nullable=False),
    # How many times the day was re-priced: the next correction's key suffix.
    Column("revision", Integer, nullable=False, server_default=text("0")),
    # XP a re-pricing took back but the balance could not cover (an operator
    # had deducted it): the ledger keeps the truth, the balance stays >= 0.
    Column("xp_shortfall", BigInteger, nullable=False, server_default=text("0")),
    CheckConstraint("streak >= 1", name="streak_positive"),
    CheckConstraint("revision >= 0", name="revision_not_negative"),
    CheckConstraint("xp_shortfall >= 0", name="xp_shortfall_not_negative"),
    CheckConstraint("xp_granted = (base_xp + bonus_xp) * multiplier", name="xp_granted_priced"),
)
# Daily check-in counts over a range of days (analytics); the primary key
# leads with the partner and cannot serve them.
Index("ix_checkin_day", checkin.c.day)

xp_ledger = Table(
    "xp_ledger",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("partner_id", BigInteger, ForeignKey("partner.id"), nullable=False),
    Column("entry_type", String(32), nullable=False),
    Column("base_amount", BigInteger, nullable=False),
    Column("multiplier", Integer, nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("balance_after", BigInteger, nullable=False),
    # Unique through xp_ledger_key (below): a partitioned table's unique keys
    # must hold its partition key.
    Column("idempotency_key", String(200), nullable=False),
    Column("rule_version", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
    CheckConstraint("multiplier >= 1", name="multiplier_positive"),
    CheckConstraint("amount = base_amount * multiplier", name="amount_priced"),
    CheckConstraint("balance_after >= 0", name="balance_not_negative"),
    CheckConstraint(
        "entry_type IN ('checkin', 'streak_bonus', 'task_reward', 'adjustment', 'correction')",
        name="entry_type_known",
    ),
)
# A partner's history, newest first, and the reconciler's walk of each
# partner's balance chain both read one partner's rows in id order. (The
# reference document's earning(partner_id, type, created_at) served per-type
# reports; ids are already in time order, and per-type totals scan anyway.)
Index("ix_xp_ledger_partner_id_id", xp_ledger.c.partner_id, xp_ledger.c.id)
# When a partner's balance or weekly sum reached its value (the leaderboards'
# tie-break: the latest occurred_at among the rows counted), one index probe
# per partner; and one partner's rows of one week.
Index("ix_xp_ledger_partner_id_occurred_at", xp_ledger.c.partner_id, xp_ledger.c.occurred_at)
# A week's or a day range's rows: the weekly board without Redis, and the XP
# issued per day in analytics.
Index("ix_xp_ledger_occurred_at", xp_ledger.c.occurred_at)
# What a job reads back by key: a duplicate's balance, a task's reward row.
Index("ix_xp_ledger_idempotency_key", xp_ledger.c.idempotency_key)

# One row per ledger row, written by a trigger on xp_ledger in the same
# statement: its primary key is what keeps each idempotency key to one ledger
# row, on every write path. On PostgreSQL xp_ledger is partitioned by month
# (migration 0012), where a UNIQUE on the key alone is not allowed.
xp_ledger_key = Table(
    "xp_ledger_key",
    metadata,
    Column("idempotency_key", String(200), primary_key=True),
    Column("ledger_id", BigInteger, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
# PostgreSQL gets its trigger from migration 0012; SQLite from here.
event.listen(metadata, "after_create", DDL("""
CREATE TRIGGER IF NOT EXISTS xp_ledger_claim_key AFTER INSERT ON xp_ledger FOR EACH ROW BEGIN
    INSERT INTO xp_ledger_key (idempotency_key, ledger_id, created_at)
    VALUES (NEW.idempotency_key, NEW.id, NEW.created_at);
END""").execute_if(dialect="sqlite"))

audit_event = Table(
    "audit_event",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    Column("event_type", String(64), nullable=False),
    # No foreign key: a rejected job is audited even when its partner never existed.
    Column("partner_id", BigInteger),
    Column("payload", Payload, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)
# An operator looking into one partner reads their events in order.
Index("ix_audit_event_partner_id_id", audit_event.c.partner_id, audit_event.c.id)

job_failure = Table(
    "job_failure",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    # sha256 of task name and payload: a poison message delivered again
    # bumps `attempts` on its row instead of adding one.
    Column("fingerprint", String(64), nullable=False, unique=True),
    Column("task_name", String(200), nullable=False),
    # The Celery job's id (AsyncResult.id), when there was one.
    Column("job_id", String(64)),
    # The payload with every string made storable (NUL, lone surrogates
    # escaped), and its exact form as received, as JSON text.
    Column("payload", Payload, nullable=False),
    Column("payload_text", Text),
    Column("reason", String(64), nullable=False),
    Column("error", Text, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("1")),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
)
# Operators list the newest failures first.
Index("ix_job_failure_last_seen_at", job_failure.c.last_seen_at)

partner_task = Table(
    "partner_task",
    metadata,
    # (partner, task, attempt) is the idempotency key of a start and of a claim.
    Column("partner_id", BigInteger, ForeignKey("partner.id"), primary_key=True),
    Column("task_id", String(64), primary_key=True),
    Column("attempt", Integer, primary_key=True, autoincrement=False),
    Column("status", String(16), nullable=False),
    # The metric the progress rule measures from: referral_count at the start
    # for referral tasks, 0 for the others.
    Column("initial_metric_value", Integer, nullable=False, server_default=text("0")),
    # The partner-local day of the start: action progress counts check-in days
    # from it. Kept as a day because the partner's time zone may change later.
    Column("start_day", Date, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("completed_at", UtcDateTime),
    # What the completed attempt pays now: set by the claim, changed by a late
    # PRO change (with a correction row, revision + 1).
    Column("multiplier", Integer),
    Column("xp_granted", BigInteger),
    Column("revision", Integer, nullable=False, server_default=text("0")),
    CheckConstraint("attempt >= 1", name="attempt_positive"),
    CheckConstraint("status IN ('STARTED', 'COMPLETED', 'EXPIRED')", name="status_known"),
    CheckConstraint("initial_metric_value >= 0", name="initial_metric_not_negative"),
    CheckConstraint("(status = 'COMPLETED') = (completed_at IS NOT NULL)",
                    name="completed_at_iff_completed"),
    CheckConstraint("(status = 'COMPLETED') = (xp_granted IS NOT NULL)", name="xp_granted_iff_completed"),
)
# At most one live (STARTED or COMPLETED) attempt per partner and task: a new
# attempt can only begin once the previous one has EXPIRED.
Index(
    "ux_partner_task_live_attempt",
    partner_task.c.partner_id,
    partner_task.c.task_id,
    unique=True,
    postgresql_where=partner_task.c.status != "EXPIRED",
    sqlite_where=partner_task.c.status != "EXPIRED",
)
# A partner's task list by status (the reference document's proposal).
Index("ix_partner_task_partner_id_status", partner_task.c.partner_id, partner_task.c.status)
# The task funnel of a report window: attempts started in it, by task and status,
# read from the index alone.
Index("ix_partner_task_started_at_task_id_status", partner_task.c.started_at, partner_task.c.task_id,
      partner_task.c.status)
# The stale-task sweep looks for old STARTED attempts only; finished ones,
# the vast majority over time, stay out of the index.
Index(
    "ix_partner_task_stale_sweep",
    partner_task.c.started_at,
    postgresql_where=partner_task.c.status == "STARTED",
    sqlite_where=partner_task.c.status == "STARTED",
)

referral = Table(
    "referral",
    metadata,
    # One row per referee: its primary key is the referral's idempotency key.
    Column("referee_id", BigInteger, ForeignKey("partner.id"), primary_key=True, autoincrement=False),
    Column("referrer_id", BigInteger, ForeignKey("partner.id"), nullable=False),
    Column("occurred_at", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("referee_id <> referrer_id", name="not_self_referral"),
)
# A referrer's referrals, and the reconciler's count of them.
Index("ix_referral_referrer_id", referral.c.referrer_id)

adjustment = Table(
    "adjustment",
    metadata,
    # The operator's request_id: replaying it returns the first outcome, and
    # reusing it with other parameters is refused, whatever that outcome was.
    Column("request_id", String(100), primary_key=True),
    Column("partner_id", BigInteger, ForeignKey("partner.id"), nullable=False),
    Column("amount", BigInteger, nullable=False),
    Column("reason", String(200), nullable=False),
    Column("status", String(16), nullable=False),
    Column("rejection_reason", String(64)),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("amount <> 0", name="amount_not_zero"),
    CheckConstraint("status IN ('applied', 'rejected')", name="status_known"),
    CheckConstraint("(status = 'rejected') = (rejection_reason IS NOT NULL)",
                    name="rejection_reason_iff_rejected"),
)
# An operator looking into one partner lists their adjustments.
Index("ix_adjustment_partner_id", adjustment.c.partner_id)

plan_change = Table(
    "plan_change",
    metadata,
    # One row per PRO change by the instant it happened upstream: a late or
    # replayed update lands in its place in the history, whatever the order.
    Column("partner_id", BigInteger, ForeignKey("partner.id"), primary_key=True),
    Column("occurred_at", UtcDateTime, primary_key=True),
    # PRO until this instant from `occurred_at` on; NULL ends PRO.
    Column("pro_until", UtcDateTime),
    Column("created_at", UtcDateTime, nullable=False),
)

streak_freeze = Table(
    "streak_freeze",
    metadata,
    Column("partner_id", BigInteger, ForeignKey("partner.id"), primary_key=True),
    # The ISO week of the frozen (missed) day, e.g. '2026-W02' (rules.iso_week):
    # the key itself allows one freeze per partner per week.
    Column("iso_week", String(10), primary_key=True),
    Column("frozen_day", Date, nullable=False),
    Column("checkin_day", Date, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    CheckConstraint("checkin_day > frozen_day", name="bridges_to_a_later_checkin"),
)

partner_badge = Table(
    "partner_badge",
    metadata,
    Column("partner_id", BigInteger, ForeignKey("partner.id"), primary_key=True),
    Column("badge", String(64), primary_key=True),
    Column("streak_days", Integer, nullable=False),
    # The check-in that earned it; empty for badges backfilled from longest_streak.
    Column("checkin_day", Date),
    Column("awarded_at", UtcDateTime, nullable=False),
)

outbox = Table(
    "outbox",
    metadata,
    Column("id", SerialId, primary_key=True, autoincrement=True),
    # Stable across redeliveries: consumers de-duplicate on it.
    Column("event_id", Uuid, nullable=False, unique=True),
    Column("event_type", String(64), nullable=False),
    # No foreign key, as in audit_event: an event may outlive or precede its partner row.
    Column("partner_id", BigInteger),
    Column("payload", Payload, nullable=False),
    # Set for events that must exist once per fact (one streak-at-risk notice
    # per partner per local day); NULLs never collide.
    Column("idempotency_key", String(200), unique=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("next_attempt_at", UtcDateTime, nullable=False),
    Column("delivered_at", UtcDateTime),
    Column("last_error", Text),
    CheckConstraint("attempts >= 0", name="attempts_not_negative"),
)
# The relay claims the oldest due undelivered events; delivered ones (most
# rows, soon) stay out of that index.
Index(
    "ix_outbox_pending",
    outbox.c.next_attempt_at,
    outbox.c.id,
    postgresql_where=outbox.c.delivered_at.is_(None),
    sqlite_where=outbox.c.delivered_at.is_(None),
)
# Pruning finds delivered events past their retention.
Index(
    "ix_outbox_delivered_at",
    outbox.c.delivered_at,
    postgresql_where=outbox.c.delivered_at.isnot(None),
    sqlite_where=outbox.c.delivered_at.isnot(None),
)

maintenance_checkpoint = Table(
    "maintenance_checkpoint",
    metadata,
    Column("job", String(100), primary_key=True),
    # Job-specific position, e.g. the last xp_ledger.id the reconciler covered.
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

# Each maintenance job's last run, for monitoring (rewards.metrics.state,
# `rewards status`): when it last ran, whether it skipped, and what the last
# run that did its work found. One row per job, written as a run ends.
maintenance_run = Table(
    "maintenance_run",
    metadata,
    Column("job", String(100), primary_key=True),
    Column("last_run_at", UtcDateTime, nullable=False),
    # Why the last run did nothing (another run held the job's lock), or NULL.
    Column("skipped", String(200)),
    Column("done_at", UtcDateTime),
    Column("examined", BigInteger, nullable=False, server_default=text("0")),
    Column("changed", BigInteger, nullable=False, server_default=text("0")),
    # The last run that did its work stopped at its batch limit with work left.
    Column("more", Boolean, nullable=False, server_default=false()),
    Column("took_ms", Float, nullable=False, server_default=text("0")),
    # Its job-specific counts, e.g. reconcile's mismatches.
    Column("details", Payload, nullable=False, server_default=text("'{}'")),
)


def modelled(name: str, type_: str, parent_names: dict) -> bool:
    """Whether the models describe this schema object: all but the monthly partitions.

    On PostgreSQL audit_event and xp_ledger are partitioned by month
    (migrations 0011 and 0012) and their primary keys are (id, created_at),
    as a partitioned table's keys must hold its partition key; SQLite keeps
    one table of each, keyed by id. Alembic's `include_name` hook, for
    migrations and the schema test alike.
    """
    return not (type_ == "table" and name.startswith(("audit_event_p", "xp_ledger_p")))
