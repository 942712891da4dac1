"""grants.secret_lengths: {fingerprint: length} of each issued secret

The scanner extracts candidate substrings of exactly these lengths when it looks for
broker-issued secrets, instead of fingerprinting every token-like substring. A length is not
secret material (the fingerprint already implies it to anyone holding the key).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.add_column(sa.Column("secret_lengths", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("grants") as batch:
        batch.drop_column("secret_lengths")
