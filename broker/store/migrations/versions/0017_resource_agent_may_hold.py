"""resources.agent_may_hold: may an agent be handed the resource's credential?

False: only the broker uses it (the gateway injects it into the calls it makes); the credentials
endpoint and the MCP tool ``request_credential`` refuse it. Existing resources keep today's
behaviour (true), except ``http_api`` ones, whose credential was never handed out.

Revision ID: 0017
Revises: 0016
"""

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.add_column(sa.Column("agent_may_hold", sa.Boolean(), nullable=False, server_default=sa.true()))
    op.execute("UPDATE resources SET agent_may_hold = false WHERE kind = 'http_api'")


def downgrade() -> None:
    with op.batch_alter_table("resources") as batch:
        batch.drop_column("agent_may_hold")
