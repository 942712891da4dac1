"""tasks.parent_task_id / tasks.delegation: sub-tasks a task's agent delegated to another agent

A delegated task names its parent and the narrower scope it was given (actions, ceiling). Ending,
expiring or escalating a parent cascades to every descendant.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("parent_task_id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("delegation", sa.JSON(), nullable=True))
        batch.create_index("ix_tasks_parent_task_id", ["parent_task_id"])


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_index("ix_tasks_parent_task_id")
        batch.drop_column("delegation")
        batch.drop_column("parent_task_id")
