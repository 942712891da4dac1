"""chains: chain_events table; revocations.last_error_kind (unavailable | error)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24 12:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chain_events",
        sa.Column("event_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=True),
        sa.Column("resource", sa.String(length=128), nullable=True),
        sa.Column("text_length", sa.Integer(), nullable=True),
        sa.Column("text_fingerprint", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_chain_events")),
    )
    with op.batch_alter_table("chain_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_chain_events_task_id"), ["task_id"], unique=False)
        batch_op.create_index("ix_chain_events_task_created", ["task_id", "created_at"], unique=False)
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("last_error_kind", sa.String(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("revocations", schema=None) as batch_op:
        batch_op.drop_column("last_error_kind")
    with op.batch_alter_table("chain_events", schema=None) as batch_op:
        batch_op.drop_index("ix_chain_events_task_created")
        batch_op.drop_index(batch_op.f("ix_chain_events_task_id"))
    op.drop_table("chain_events")
