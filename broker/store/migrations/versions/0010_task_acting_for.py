"""tasks.acting_for: the person a task acts for, proven by an ID token at the token exchange

``on_behalf_of`` stays what the agent typed; ``acting_for`` (issuer, subject, configured claims) is
what the broker verified. Only a verified person counts as a human present. Rows written before
this revision have NULL (no verified person).

Revision ID: 0010
Revises: 0009
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(sa.Column("acting_for", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("acting_for")
