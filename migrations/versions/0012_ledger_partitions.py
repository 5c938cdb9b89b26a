"""xp_ledger partitioned by month, its idempotency keys kept unique in xp_ledger_key.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-06

The ledger is kept for ever, but old months can now move to cheaper storage
(`ALTER TABLE … SET TABLESPACE` on a partition) or be detached and archived.
A unique constraint on a partitioned table must include the partition key,
so `xp_ledger.idempotency_key` can no longer be UNIQUE by itself. Its
uniqueness moves to ``xp_ledger_key``, whose primary key is the idempotency
key: an AFTER INSERT trigger on the ledger writes one key row for each ledger
row, in the same statement and transaction, so a second ledger row with a
key already used fails exactly as the UNIQUE constraint did, on every write
path. The ledger keeps a plain index on the key for lookups.

The conversion is safe while workers write, at any size:

1. the key table and its trigger; from then on every new ledger row is keyed;
2. the keys of the rows written before, copied in batches (a key the
   trigger wrote already is skipped);
3. indexes the partitioned table needs, built CONCURRENTLY: (id, created_at)
   unique, and idempotency_key;
4. a CHECK that every row is older than the month after next, validated
   without blocking writes;
5. in one short transaction (under the migrations' lock_timeout): the table
   is renamed to ``xp_ledger_p_before_YYYY_MM`` (its own UNIQUE key and
   trigger dropped: the key table and the parent's trigger take over), an
   empty partitioned ``xp_ledger`` takes its name, sequence, constraints,
   trigger and grants, and the old table is attached as the partition of
   everything before that month, without a scan;
6. a default partition, and months made ahead by the retention job through
   ``xp_ledger_add_partitions(through)``, which only the retention role may
   call. Nothing drops a ledger month.

SQLite (the embedded default, made from the models) keeps one table, with
the same key table and trigger.
"""

from datetime import datetime, timezone

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

BACKFILL_BATCH = 50_000

CHECKS = {
    "ck_xp_ledger_amount_not_zero": "amount <> 0",
    "ck_xp_ledger_amount_priced": "amount = base_amount * multiplier",
    "ck_xp_ledger_balance_not_negative": "balance_after >= 0",
    "ck_xp_ledger_entry_type_known":
        "entry_type IN ('checkin', 'streak_bonus', 'task_reward', 'adjustment', 'correction')",
    "ck_xp_ledger_multiplier_positive": "multiplier >= 1",
}
CHECK_CONSTRAINTS = "".join(f",\n        CONSTRAINT {name} CHECK ({rule})" for name, rule in CHECKS.items())
# The ledger's columns, as migration 0001 made them.
COLUMNS = """id bigint NOT NULL DEFAULT nextval('xp_ledger_id_seq'),
        partner_id bigint NOT NULL,
        entry_type varchar(32) NOT NULL,
        base_amount bigint NOT NULL,
        multiplier integer NOT NULL,
        amount bigint NOT NULL,
        balance_after bigint NOT NULL,
        idempotency_key varchar(200) NOT NULL,
        rule_version varchar(64) NOT NULL,
        description text NOT NULL,
        occurred_at timestamptz NOT NULL,
        created_at timestamptz NOT NULL"""
# Index name -> columns, on the parent; the old table's are renamed out of the way first.
INDEXES = {
    "ix_xp_ledger_partner_id_id": "partner_id, id",
    "ix_xp_ledger_partner_id_occurred_at": "partner_id, occurred_at",
    "ix_xp_ledger_occurred_at": "occurred_at",
    "ix_xp_ledger_idempotency_key": "idempotency_key",
}

KEY_TABLE = [
    """CREATE TABLE xp_ledger_key (
           idempotency_key varchar(200) NOT NULL,
           ledger_id bigint NOT NULL,
           created_at timestamptz NOT NULL,
           CONSTRAINT pk_xp_ledger_key PRIMARY KEY (idempotency_key)
       )""",
    "GRANT SELECT, INSERT ON xp_ledger_key TO rewards_worker",
    "GRANT SELECT ON xp_ledger_key TO rewards_reader",
    # Qualified, so no table of the caller's search_path (a temporary one) can stand in for it.
    """CREATE FUNCTION xp_ledger_claim_key() RETURNS trigger LANGUAGE plpgsql AS $$
       BEGIN
           INSERT INTO public.xp_ledger_key (idempotency_key, ledger_id, created_at)
           VALUES (NEW.idempotency_key, NEW.id, NEW.created_at);
           RETURN NULL;
       END $$""",
    "CREATE TRIGGER xp_ledger_claim_key AFTER INSERT ON xp_ledger FOR EACH ROW EXECUTE FUNCTION xp_ledger_claim_key()",
]

PARTITIONS_VIEW = """
CREATE VIEW xp_ledger_partitions AS
SELECT c.relname::text AS name,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'FROM \\(''([^'']+)''\\)')::timestamptz AS lower_bound,
       substring(pg_get_expr(c.relpartbound, c.oid) FROM 'TO \\(''([^'']+)''\\)')::timestamptz AS upper_bound
FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
WHERE i.inhparent = 'xp_ledger'::regclass
"""

# As audit_event_add_partitions (migration 0011).
ADD_PARTITIONS = """
CREATE FUNCTION xp_ledger_add_partitions(through timestamptz) RETURNS SETOF text
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
        IF NOT EXISTS (SELECT FROM xp_ledger_partitions AS p
                       WHERE p.upper_bound > month_start AND coalesce(p.lower_bound < month_end, true)) THEN
            name := 'xp_ledger_p' || to_char(month_start, 'YYYY_MM');
            EXECUTE format('CREATE TABLE %I PARTITION OF xp_ledger FOR VALUES FROM (%L) TO (%L)',
                           name, month_start, month_end);
            RETURN NEXT name;
        END IF;
        month_start := month_end;
    END LOOP;
END $$
"""


def upgrade() -> None:
    conn = op.get_bind()
    if conn.dialect.name != "postgresql":
        return  # the embedded SQLite default is made from the models, key table and trigger included
    now = datetime.now(timezone.utc)
    months = now.year * 12 + now.month + 1  # the month after next
    bound = datetime(months // 12, months % 12 + 1, 1, tzinfo=timezone.utc).isoformat()
    for statement in KEY_TABLE:
        op.execute(statement)
    with op.get_context().autocommit_block():
        _copy_keys(conn)
        op.execute("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS xp_ledger_id_created_at"
                   " ON xp_ledger (id, created_at)")
        op.execute("CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_xp_ledger_idempotency_key"
                   " ON xp_ledger (idempotency_key)")
    op.execute(f"ALTER TABLE xp_ledger ADD CONSTRAINT xp_ledger_bound CHECK (created_at < '{bound}') NOT VALID")
    op.execute("ALTER TABLE xp_ledger VALIDATE CONSTRAINT xp_ledger_bound")
    op.execute("LOCK TABLE xp_ledger IN ACCESS EXCLUSIVE MODE")
    if conn.execute(sa.text("SELECT EXISTS (SELECT FROM xp_ledger)")).scalar_one():
        _partition_existing_rows(bound)
    else:  # a new database: months from this one on, no partition of the past
        op.execute("ALTER SEQUENCE xp_ledger_id_seq OWNED BY NONE")
        op.execute("DROP TABLE xp_ledger")
        _create_parent()
        op.execute(f"SELECT xp_ledger_add_partitions('{bound}')")


def _copy_keys(conn) -> None:
    """The keys of the rows written before the trigger, a batch of ids per transaction."""
    last_id = conn.execute(sa.text("SELECT coalesce(max(id), 0) FROM xp_ledger")).scalar_one()
    for first_id in range(0, last_id, BACKFILL_BATCH):
        conn.execute(sa.text(
            "INSERT INTO xp_ledger_key (idempotency_key, ledger_id, created_at)"
            " SELECT idempotency_key, id, created_at FROM xp_ledger WHERE id > :first AND id <= :last"
            " ON CONFLICT (idempotency_key) DO NOTHING"), {"first": first_id, "last": first_id + BACKFILL_BATCH})


def _partition_existing_rows(bound: str) -> None:
    """The old table becomes the partition of everything before `bound`, and months start there."""
    legacy = f"xp_ledger_p_before_{bound[:7].replace('-', '_')}"
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {legacy}_{name.removeprefix('ix_xp_ledger_')}_idx")
    for statement in (
        f"ALTER TABLE xp_ledger RENAME TO {legacy}",
        f"ALTER TABLE {legacy} DROP CONSTRAINT uq_xp_ledger_idempotency_key",
        f"ALTER TABLE {legacy} DROP CONSTRAINT pk_xp_ledger",
        f"ALTER TABLE {legacy} ADD CONSTRAINT {legacy}_pkey PRIMARY KEY USING INDEX xp_ledger_id_created_at",
        f"DROP TRIGGER xp_ledger_claim_key ON {legacy}",
        f"REVOKE ALL ON {legacy} FROM rewards_worker, rewards_reader",
    ):
        op.execute(statement)
    _create_parent()
    op.execute(f"ALTER TABLE xp_ledger ATTACH PARTITION {legacy} FOR VALUES FROM (MINVALUE) TO ('{bound}')")
    op.execute(f"ALTER TABLE {legacy} DROP CONSTRAINT xp_ledger_bound")
    op.execute(f"SELECT xp_ledger_add_partitions('{bound}'::timestamptz + interval '1 month')")


def _create_parent() -> None:
    """The partitioned xp_ledger, its default partition, trigger, grants and partition function."""
    op.execute(f"""CREATE TABLE xp_ledger (
        {COLUMNS},
        CONSTRAINT pk_xp_ledger PRIMARY KEY (id, created_at),
        CONSTRAINT fk_xp_ledger_partner_id_partner FOREIGN KEY (partner_id) REFERENCES partner (id){CHECK_CONSTRAINTS}
    ) PARTITION BY RANGE (created_at)""")
    for name, columns in INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON xp_ledger ({columns})")
    for statement in (
        "ALTER SEQUENCE xp_ledger_id_seq OWNED BY xp_ledger.id",
        "CREATE TRIGGER xp_ledger_claim_key AFTER INSERT ON xp_ledger FOR EACH ROW EXECUTE FUNCTION xp_ledger_claim_key()",
        "CREATE TABLE xp_ledger_p_default PARTITION OF xp_ledger DEFAULT",
        "GRANT SELECT, INSERT ON xp_ledger TO rewards_worker",
        "GRANT SELECT ON xp_ledger TO rewards_reader",
        PARTITIONS_VIEW, ADD_PARTITIONS,
        "REVOKE ALL ON FUNCTION xp_ledger_add_partitions FROM PUBLIC",
        "GRANT EXECUTE ON FUNCTION xp_ledger_add_partitions TO rewards_retention",
        "GRANT SELECT ON xp_ledger_partitions TO rewards_reader",
    ):
        op.execute(statement)


def downgrade() -> None:
    """Back to one table, rows copied: for a database small enough to copy while it is stopped."""
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP FUNCTION xp_ledger_add_partitions")
    op.execute("DROP VIEW xp_ledger_partitions")
    op.execute("ALTER TABLE xp_ledger RENAME TO xp_ledger_partitioned")
    for name in INDEXES:
        op.execute(f"ALTER INDEX {name} RENAME TO {name}_partitioned")
    op.execute("ALTER TABLE xp_ledger_partitioned RENAME CONSTRAINT pk_xp_ledger TO pk_xp_ledger_partitioned")
    op.execute(f"""CREATE TABLE xp_ledger (
        {COLUMNS},
        CONSTRAINT pk_xp_ledger PRIMARY KEY (id),
        CONSTRAINT uq_xp_ledger_idempotency_key UNIQUE (idempotency_key),
        CONSTRAINT fk_xp_ledger_partner_id_partner FOREIGN KEY (partner_id) REFERENCES partner (id){CHECK_CONSTRAINTS}
    )""")
    op.execute("INSERT INTO xp_ledger SELECT * FROM xp_ledger_partitioned")
    for name, columns in INDEXES.items():
        if name != "ix_xp_ledger_idempotency_key":
            op.execute(f"CREATE INDEX {name} ON xp_ledger ({columns})")
    op.execute("ALTER SEQUENCE xp_ledger_id_seq OWNED BY xp_ledger.id")
    op.execute("DROP TABLE xp_ledger_partitioned")
    op.execute("DROP FUNCTION xp_ledger_claim_key CASCADE")
    op.execute("DROP TABLE xp_ledger_key")
    op.execute("GRANT SELECT, INSERT ON xp_ledger TO rewards_worker")
    op.execute("GRANT SELECT ON xp_ledger TO rewards_reader")
