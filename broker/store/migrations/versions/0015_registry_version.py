"""registry_version: one counter row every agent/profile/resource change increments

The request path caches agents, profiles and resources in each process; it reads this row (one
statement) in the same read as the task and reuses a cached entry only when it was loaded at the
current version, so an admin change on any replica is honoured by every other one on its next
request.

Revision ID: 0015
Revises: 0014
"""

import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "registry_version",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
    )
    op.bulk_insert(table, [{"id": 1, "version": 0}])


def downgrade() -> None:
    op.drop_table("registry_version")
