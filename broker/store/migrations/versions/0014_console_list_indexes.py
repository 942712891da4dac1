"""Indexes for the console's newest-first lists (issue 17): tasks by creation time, scan findings
by last sighting. Without them each page of those lists sorts the whole table (measured: ~500 ms a
page over 100,000 tasks on SQLite, benchmarks/console_pages.py).

Revision ID: 0014
Revises: 0013
"""

from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_tasks_created_at", "tasks", ["created_at"], unique=False)
    op.create_index("ix_scan_findings_last_seen", "scan_findings", ["last_seen"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_scan_findings_last_seen", table_name="scan_findings")
    op.drop_index("ix_tasks_created_at", table_name="tasks")
