"""audit_event partitioned by month, with functions that add months and drop expired ones.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06

Audit rows are kept for REWARDS_AUDIT_RETENTION_DAYS, then dropped a month
at a time: dropping a partition frees its files at once, where deleting
millions of rows a day would leave autovacuum behind and the table bloated.
Native partitioning rather than pg_partman: two small functions, and no
extension a managed PostgreSQL may not offer.

The conversion is safe while workers write, at any size:

1. a unique index on (id, created_at), built CONCURRENTLY;
2. a CHECK that every row is older than the month after next, added NOT
   VALID and validated without blocking writes;
3. in one short transaction (under the lock_timeout migrations run with):
   the table is renamed to ``audit_event_p_before_YYYY_MM``, the index
   becomes its primary key, an empty partitioned ``audit_event`` takes its
   name, sequence and grants, and the old table is attached as the partition
   of everything before that month: the CHECK spares the attach its scan;
4. a partition for the month after next, and a default partition that
   catches rows no month holds yet (normally empty: a month is created
   three months ahead by the retention job).

The primary key becomes (id, created_at), since a partitioned table's unique
keys must hold its partition key; ids still come from one sequence.

``audit_event_add_partitions(through)`` and ``audit_event_drop_partitions(before)``
run as the owner (SECURITY DEFINER) with a short lock_timeout, and only the
retention role may call them: it drops months, it never writes DDL of its own.
Dropping refuses to reach into the last 30 days.

SQLite keeps one table (the retention job deletes its old rows).
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

# Who may do what on the new parent: as migration 0009 granted on the old table.
GRANTS = ("GRANT SELECT, INSERT ON audit_event TO rewards_worker",
          "GRANT SELECT ON audit_event TO rewards_reader",
          "GRANT SELECT, DELETE ON audit_event TO rewards_retention")

PARTITIONS_VIEW = """
CREATE VIEW audit_event_partitions AS
SELECT c.relname::text AS name,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz AS lower_bound,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper_bound
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'audit_event'::regclass
"""

# Every month that starts before `through` gets a partition, unless a
# partition already covers part of it (the one before the conversion does).
ADD_PARTITIONS = """
CREATE FUNCTION audit_event_add_partitions(through timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp SET TimeZone = 'UTC' SET lock_timeout = '2s' AS $$
DECLARE
    month_start timestamptz := date_trunc('month', now());
    month_end timestamptz;
    name text;
BEGIN
    IF through > now() + interval '1 year' THEN
        RAISE EXCEPTION 'partitions are made at most a year ahead: % is too far', through;
    END IF;
    WHILE month_start < through LOOP
        month_end := month_start + interval '1 month';
        IF NOT EXISTS (SELECT FROM audit_event_partitions AS p
                       WHERE p.upper_bound > month_start AND coalesce(p.lower_bound < month_end, true)) THEN
            name := 'audit_event_p' || to_char(month_start, 'YYYY_MM');
            EXECUTE format('CREATE TABLE %I PARTITION OF audit_event FOR VALUES FROM (%L) TO (%L)',
                           name, month_start, month_end);
            RETURN NEXT name;
        END IF;
        month_start := month_end;
    END LOOP;
END $$
"""

DROP_PARTITIONS = """
CREATE FUNCTION audit_event_drop_partitions(before timestamptz) RETURNS SETOF text
LANGUAGE plpgsql SECURITY DEFINER
SET search_path = public, pg_temp SET TimeZone = 'UTC' SET lock_timeout = '2s' AS $$
DECLARE
    expired record;
BEGIN
    IF before > now() - interval '30 days' THEN
        RAISE EXCEPTION 'audit rows are kept at least 30 days: % is too recent a cut', before;
    END IF;
    FOR expired IN SELECT p.name FROM audit_event_partitions AS p
                   WHERE p.upper_bound <= before ORDER BY p.upper_bound LOOP
        EXECUTE format('DROP TABLE %I', expired.name);
        RETURN NEXT expired.name;
    END LOOP;
END $$
"""


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return
    now = datetime.now(timezone.utc)
    # The month after next: rows written while this runs stay well inside the bound.
    months = now.year * 12 + now.month + 1
    bound = datetime(months // 12, months % 12 + 1, 1, tzinfo=timezone.utc).isoformat()
    with op.get_context().autocommit_block():
        op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS audit_event_id_created_at"
                   " ON audit_event (id, created_at)")
    op.execute(f"ALTER TABLE audit_event ADD CONSTRAINT audit_event_bound CHECK (created_at < '{bound}') NOT VALID")
    op.execute("ALTER TABLE audit_event VALIDATE CONSTRAINT audit_event_bound")
    op.execute("LOCK TABLE audit_event IN ACCESS EXCLUSIVE MODE")
    if conn.execute(sa.text("SELECT EXISTS (SELECT FROM audit_event)")).scalar_one():
        _partition_existing_rows(bound)
    else:  # a new database: months from this one on, no partition of the past
        op.execute("ALTER SEQUENCE audit_event_id_seq OWNED BY NONE")
        op.execute("DROP TABLE audit_event")
        _create_parent()
        op.execute(f"SELECT audit_event_add_partitions('{bound}')")


def _partition_existing_rows(bound: str) -> None:
    """The old table becomes the partition of everything before `bound`, and months start there."""
    legacy = f"audit_event_p_before_{bound[:7].replace('-', '_')}"
    for statement in (
        f"ALTER TABLE audit_event RENAME TO {legacy}",
        f"ALTER INDEX ix_audit_event_partner_id_id RENAME TO {legacy}_partner_id_id_idx",
        f"ALTER TABLE {legacy} DROP CONSTRAINT pk_audit_event",
        f"ALTER TABLE {legacy} ADD CONSTRAINT {legacy}_pkey PRIMARY KEY USING INDEX audit_event_id_created_at",
        f"REVOKE ALL ON {legacy} FROM rewards_worker, rewards_reader, rewards_retention",
    ):
        op.execute(statement)
    _create_parent()
    op.execute(f"ALTER TABLE audit_event ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO ('{bound}')")
    op.execute(f"ALTER TABLE {legacy} DROP CONSTRAINT audit_event_bound")
    op.execute(f"SELECT audit_event_add_partitions('{bound}'::timestamptz + interval '1 month')")


def _create_parent() -> None:
    """The partitioned audit_event, its default partition, grants and functions."""
    for statement in (
        """CREATE TABLE audit_event (
               id bigint NOT NULL DEFAULT nextval('audit_event_id_seq'),
               event_type varchar(64) NOT NULL,
               partner_id bigint,
               payload jsonb NOT NULL,
               created_at timestamptz NOT NULL,
               CONSTRAINT pk_audit_event PRIMARY KEY (id, created_at)
           ) PARTITION BY RANGE (created_at)""",
        "CREATE INDEX ix_audit_event_partner_id_id ON audit_event (partner_id, id)",
        "ALTER SEQUENCE audit_event_id_seq OWNED BY audit_event.id",
        "CREATE TABLE audit_event_p_default PARTITION OF audit_event DEFAULT",
        *GRANTS,
        PARTITIONS_VIEW, ADD_PARTITIONS, DROP_PARTITIONS,
        "REVOKE ALL ON FUNCTION audit_event_add_partitions, audit_event_drop_partitions FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION audit_event_add_partitions, audit_event_drop_partitions TO rewards_retention",
        "GRANT SELECT ON audit_event_partitions TO rewards_reader",
    ):
        op.execute(statement)


def downgrade() -> None:
    """Back to one table, rows copied: for a database small enough to copy while it is stopped."""
    if op.get_bind().dialect.name != "postgresql":
        return
    for statement in (
        "DROP FUNCTION audit_event_add_partitions, audit_event_drop_partitions",
        "DROP VIEW audit_event_partitions",
        "ALTER TABLE audit_event RENAME TO audit_event_partitioned",
        "ALTER INDEX ix_audit_event_partner_id_id RENAME TO audit_event_partitioned_partner_id_id_idx",
        "ALTER TABLE audit_event_partitioned RENAME CONSTRAINT pk_audit_event TO audit_event_partitioned_pkey",
        """CREATE TABLE audit_event (
               id bigint NOT NULL DEFAULT nextval('audit_event_id_seq'),
               event_type varchar(64) NOT NULL,
               partner_id bigint,
               payload jsonb NOT NULL,
               created_at timestamptz NOT NULL,
               CONSTRAINT pk_audit_event PRIMARY KEY (id)
           )""",
        "INSERT INTO audit_event SELECT * FROM audit_event_partitioned",
        "CREATE INDEX ix_audit_event_partner_id_id ON audit_event (partner_id, id)",
        "ALTER SEQUENCE audit_event_id_seq OWNED BY audit_event.id",
        "DROP TABLE audit_event_partitioned",
        *GRANTS,
    ):
        op.execute(statement)
