"""rotation: managed_secrets (static secrets the broker rotates; fingerprints only, never values)

Revision ID: 0004
Revises: 0002
Create Date: 2026-11-24 14:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "managed_secrets",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("kv_mount", sa.String(length=128), nullable=True),
        sa.Column("kv_path", sa.String(length=512), nullable=True),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("max_age_seconds", sa.Integer(), nullable=True),
        sa.Column("overlap_seconds", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("fingerprints_current", sa.JSON(), nullable=False),
        sa.Column("fingerprints_previous", sa.JSON(), nullable=False),
        sa.Column("current_ref", sa.JSON(), nullable=False),
        sa.Column("previous_ref", sa.JSON(), nullable=True),
        sa.Column("retire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_managed_secrets")),
    )


def downgrade() -> None:
    op.drop_table("managed_secrets")
