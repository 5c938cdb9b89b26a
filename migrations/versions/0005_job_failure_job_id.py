"""Rename job_failure.task_id to job_id: it holds a Celery job's id, not a catalogue task.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25

A rename is instant (catalogue only, no table rewrite). Workers of the
previous release write `task_id` when they record a failure: stop them before
migrating and start the new ones after. A failure recorded by an old worker
in between is not lost: its insert fails, and the job's log line
(`event=job.failed … job_id=…`) remains.
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.alter_column("job_failure", "task_id", new_column_name="job_id")


def downgrade() -> None:
    op.alter_column("job_failure", "job_id", new_column_name="task_id")
