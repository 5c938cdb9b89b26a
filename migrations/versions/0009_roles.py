"""PostgreSQL roles: the worker does what jobs do, the read side reads, retention prunes.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-27

Three NOLOGIN group roles, created once per cluster (roles are cluster-wide,
so a second database migrating finds them and only adds its grants):

- ``rewards_worker``: what the jobs and maintenance jobs run, nothing more.
  No DDL; ``xp_ledger`` and ``audit_event`` are append-only by privilege
  (SELECT and INSERT), ``checkin`` rows are re-priced (UPDATE) but never
  deleted; the only DELETEs are a withdrawn badge and a re-priced freeze.
- ``rewards_reader``: SELECT on every table (the read side).
- ``rewards_retention``: pruning old delivered outbox events, and old audit
  and failure rows; nothing on the ledger.

Login roles are made members of these groups by whoever provisions them
(docs/security.md, "PostgreSQL roles"). Grants take no lock a running job waits on, and
the previous release connects as the owner, so it runs on unchanged.
Deleting a re-driven ``job_failure`` row is an operator action, run with the
owner's URL: no group may do it.
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

GROUPS = ("rewards_worker", "rewards_reader", "rewards_retention")

# table -> what rewards_worker may do to it (grep the write side for each statement):
# UPDATE where a job re-prices, claims, counts or leases in place (ON CONFLICT
# DO UPDATE and SELECT … FOR UPDATE need it too).
WORKER_TABLE_PRIVILEGES = {
    "partner": "SELECT, INSERT, UPDATE",
    "checkin": "SELECT, INSERT, UPDATE",
    "plan_change": "SELECT, INSERT, UPDATE",
    "partner_task": "SELECT, INSERT, UPDATE",
    "referral": "SELECT, INSERT",
    "adjustment": "SELECT, INSERT",
    "xp_ledger": "SELECT, INSERT",
    "audit_event": "SELECT, INSERT",
    "job_failure": "SELECT, INSERT, UPDATE",
    "streak_freeze": "SELECT, INSERT, DELETE",
    "partner_badge": "SELECT, INSERT, DELETE",
    "outbox": "SELECT, INSERT, UPDATE",
    "maintenance_checkpoint": "SELECT, INSERT, UPDATE",
}
# The identity sequences behind the tables the worker inserts into.
WORKER_SEQUENCES = ("xp_ledger_id_seq", "audit_event_id_seq", "job_failure_id_seq", "outbox_id_seq")
RETENTION_TABLE_PRIVILEGES = {
    "outbox": "SELECT, DELETE",
    "audit_event": "SELECT, DELETE",
    "job_failure": "SELECT, DELETE",
}
# Every table the read side may read; alembic_version lets it see the schema's revision.
READER_TABLES = (*WORKER_TABLE_PRIVILEGES, "alembic_version")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return  # SQLite has no roles
    for group in GROUPS:
        op.execute(f"""
            DO $$ BEGIN
                IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{group}') THEN
                    CREATE ROLE {group} NOLOGIN;
                END IF;
            END $$""")
    # PostgreSQL 15 and later already refuse CREATE in public to other roles;
    # older servers let every role create tables there, the worker included.
    op.execute("REVOKE CREATE ON SCHEMA public FROM PUBLIC")
    for group in GROUPS:
        op.execute(f"GRANT USAGE ON SCHEMA public TO {group}")
    for table, privileges in WORKER_TABLE_PRIVILEGES.items():
        op.execute(f"GRANT {privileges} ON {table} TO rewards_worker")
    op.execute(f"GRANT USAGE ON SEQUENCE {', '.join(WORKER_SEQUENCES)} TO rewards_worker")
    op.execute(f"GRANT SELECT ON {', '.join(READER_TABLES)} TO rewards_reader")
    for table, privileges in RETENTION_TABLE_PRIVILEGES.items():
        op.execute(f"GRANT {privileges} ON {table} TO rewards_retention")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    tables = ", ".join(READER_TABLES)
    for group in GROUPS:
        op.execute(f"REVOKE ALL ON {tables} FROM {group}")
        op.execute(f"REVOKE ALL ON SEQUENCE {', '.join(WORKER_SEQUENCES)} FROM {group}")
        op.execute(f"REVOKE ALL ON SCHEMA public FROM {group}")
    # Another database of the cluster may still grant to a group: it stays then.
    for group in GROUPS:
        op.execute(f"""
            DO $$ BEGIN
                DROP ROLE IF EXISTS {group};
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'role {group} is still granted privileges elsewhere; kept';
            END $$""")
