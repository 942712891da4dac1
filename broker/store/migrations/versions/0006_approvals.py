"""approvals: step-up approvals bound to the exact request; post-action review queue

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24 16:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> "sa.Column[object]":
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "approvals",
        sa.Column("approval_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("owner", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("resource", sa.String(length=128), nullable=False),
        sa.Column("scope_hash", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("votes", sa.JSON(), nullable=False),
        sa.Column("decided_by", sa.String(length=256), nullable=True),
        sa.Column("decision_reason", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("decided_at", True),
        _ts("collected_at", True),
        sa.Column("collected_decision_id", sa.String(length=64), nullable=True),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("collect_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("approval_id", name=op.f("pk_approvals")),
    )
    op.create_index(op.f("ix_approvals_task_id"), "approvals", ["task_id"])
    op.create_index(op.f("ix_approvals_state"), "approvals", ["state"])
    op.create_table(
        "reviews",
        sa.Column("review_id", sa.String(length=64), nullable=False),
        sa.Column("decision_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=64), nullable=False),
        sa.Column("agent", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=128), nullable=False),
        sa.Column("resource", sa.String(length=128), nullable=False),
        sa.Column("tier", sa.String(length=16), nullable=False),
        sa.Column("grant_id", sa.String(length=64), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reviewer", sa.String(length=256), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("escalation", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("resolved_at", True),
        sa.PrimaryKeyConstraint("review_id", name=op.f("pk_reviews")),
        sa.UniqueConstraint("decision_id", name=op.f("uq_reviews_decision_id")),
    )
    op.create_index(op.f("ix_reviews_task_id"), "reviews", ["task_id"])
    op.create_index(op.f("ix_reviews_state"), "reviews", ["state"])


def downgrade() -> None:
    op.drop_table("reviews")
    op.drop_table("approvals")
