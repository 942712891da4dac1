"""console_sessions: signed-in sessions of the web console (issue 17)

One row per session: the HMAC of the session id (the cookie's value is never stored), the person
and the OIDC identity they signed in with, creation, last activity (idle timeout), absolute
expiry and when it ended (sign-out, or the person disabled). In the database so that every
replica sees a sign-out at once.

Revision ID: 0013
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        _ts("created_at"),
        _ts("last_seen_at"),
        _ts("expires_at"),
        _ts("ended_at", nullable=True),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_console_sessions")),
    )
    op.create_index(op.f("ix_console_sessions_person"), "console_sessions", ["person"])


def downgrade() -> None:
    op.drop_index(op.f("ix_console_sessions_person"), table_name="console_sessions")
    op.drop_table("console_sessions")
