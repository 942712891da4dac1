"""people: authenticated approvers, reviewers, auditors and admins; agents' bound owners

``people`` (name, roles, OIDC identities), ``person_identities`` (an issuer + subject belongs to one
person), ``person_tokens`` (per-person API tokens; salted HMAC of the secret only, expiry,
revocation) and ``agents.owner_identity`` (the bound owner four-eyes compares with the
authenticated approver); ``approvals.decided_by_subject`` and ``reviews.reviewer_subject`` (how the
person who decided authenticated). Agents registered before this revision have NULL: nothing they ask is
approvable until an admin binds their owner.

Its number was reserved before 0012 (task delegation) landed on main revising 0010; it revises
0012 so that a store already at 0012 upgrades through it (one linear history: 0010, 0012, 0011).

Revision ID: 0011
Revises: 0010
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    with op.batch_alter_table("agents") as batch:
        batch.add_column(sa.Column("owner_identity", sa.JSON(), nullable=True))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("decided_by_subject", sa.JSON(), nullable=True))
    with op.batch_alter_table("reviews") as batch:
        batch.add_column(sa.Column("reviewer_subject", sa.JSON(), nullable=True))
    op.create_table(
        "people",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("display_name", sa.String(length=256), nullable=False),
        sa.Column("roles", sa.JSON(), nullable=False),
        sa.Column("identities", sa.JSON(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_people")),
    )
    op.create_table(
        "person_identities",
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "subject", name=op.f("pk_person_identities")),
    )
    op.create_index(op.f("ix_person_identities_person"), "person_identities", ["person"])
    op.create_table(
        "person_tokens",
        sa.Column("token_id", sa.String(length=64), nullable=False),
        sa.Column("person", sa.String(length=128), nullable=False),
        sa.Column("salt", sa.String(length=64), nullable=False),
        sa.Column("secret_hmac", sa.String(length=64), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        _ts("created_at"),
        _ts("expires_at"),
        _ts("revoked_at", True),
        _ts("last_used_at", True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_person_tokens")),
    )
    op.create_index(op.f("ix_person_tokens_person"), "person_tokens", ["person"])


def downgrade() -> None:
    op.drop_index(op.f("ix_person_tokens_person"), table_name="person_tokens")
    op.drop_table("person_tokens")
    op.drop_index(op.f("ix_person_identities_person"), table_name="person_identities")
    op.drop_table("person_identities")
    op.drop_table("people")
    with op.batch_alter_table("reviews") as batch:
        batch.drop_column("reviewer_subject")
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("decided_by_subject")
    with op.batch_alter_table("agents") as batch:
        batch.drop_column("owner_identity")
