"""decisions.consequence / sensitivity / external: the facts chain detectors read on every request

They were extracted from the JSON record with json_extract for every step of the task's history,
on every request (the largest cost of a long chain). Rows written before this revision keep
NULL and are read through the JSON record, as before.

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.add_column(sa.Column("consequence", sa.String(32), nullable=True))
        batch.add_column(sa.Column("sensitivity", sa.String(16), nullable=True))
        batch.add_column(sa.Column("external", sa.Boolean(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("decisions") as batch:
        batch.drop_column("external")
        batch.drop_column("sensitivity")
        batch.drop_column("consequence")
