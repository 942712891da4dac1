"""audit_head.key_id: the id of the key the audit chain is keyed with (HMAC-SHA256, issue 12)

NULL on stores written before: their events keep their plain SHA-256 links, and the broker's first
keyed write appends an ``audit.chain_keyed`` anchor whose MAC covers the last legacy hash and sets
this column (see docs/design-notes.md, "Keyed audit chain"). The key itself is never in the database.

Revision ID: 0009
Revises: 0008
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.add_column(sa.Column("key_id", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_head") as batch:
        batch.drop_column("key_id")
