"""scans: scheduled leak scans (scan_jobs, scan_job_leases, scan_state, scan_runs, scan_findings)

APScheduler keeps its own ``apscheduler_jobs`` table (created by its SQLAlchemyJobStore).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24 15:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "scan_jobs",
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("last_run", sa.JSON(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_scan_jobs")),
    )
    op.create_table(
        "scan_job_leases",
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=True),
        _ts("until", nullable=True),
        sa.Column("last_slot", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("job", name=op.f("pk_scan_job_leases")),
    )
    op.create_table(
        "scan_state",
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("key", sa.String(length=1024), nullable=False),
        sa.Column("value", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("job", "key", name=op.f("pk_scan_state")),
    )
    op.create_table(
        "scan_runs",
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("bytes", sa.Integer(), nullable=False),
        sa.Column("findings", sa.Integer(), nullable=False),
        sa.Column("new_findings", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_scan_runs")),
    )
    op.create_index(op.f("ix_scan_runs_job"), "scan_runs", ["job"], unique=False)
    op.create_table(
        "scan_findings",
        sa.Column("finding_id", sa.String(length=64), nullable=False),
        sa.Column("dedup_key", sa.String(length=64), nullable=False),
        sa.Column("job", sa.String(length=128), nullable=False),
        sa.Column("source_kind", sa.String(length=16), nullable=False),
        sa.Column("location", sa.Text(), nullable=False),
        sa.Column("line", sa.Integer(), nullable=True),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.Column("occurrences", sa.Integer(), nullable=False),
        _ts("first_seen"),
        _ts("last_seen"),
        sa.PrimaryKeyConstraint("finding_id", name=op.f("pk_scan_findings")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_scan_findings_dedup_key")),
    )
    for col in ("job", "rule", "fingerprint", "status"):
        op.create_index(op.f(f"ix_scan_findings_{col}"), "scan_findings", [col], unique=False)


def downgrade() -> None:
    for col in ("job", "rule", "fingerprint", "status"):
        op.drop_index(op.f(f"ix_scan_findings_{col}"), table_name="scan_findings")
    op.drop_table("scan_findings")
    op.drop_index(op.f("ix_scan_runs_job"), table_name="scan_runs")
    op.drop_table("scan_runs")
    op.drop_table("scan_state")
    op.drop_table("scan_job_leases")
    op.drop_table("scan_jobs")
