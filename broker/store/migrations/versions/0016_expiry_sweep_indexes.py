"""expiry sweep indexes: (state, expires_at) on grants and tasks; (task_id, state) on grants

The revocation worker expires grants and tasks on every tick (``state = 'active' AND expires_at
<= now``). With only the ``state`` index that is a scan of every active row: at 100,000 active
grants each tick held SQLite's write lock for ~130 ms and every credential request waited behind
it (benchmarks/cost_growth.py). With these it is a range that finds only what expired. And a
task's active grants, counted on every credential request, get (task_id, state): without it
SQLite's planner may take the (state, ...) prefix and walk every active grant.

Revision ID: 0016
Revises: 0015
"""

from alembic import op

revision = "0016"
down_revision = "0015"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_grants_state_expires_at", "grants", ["state", "expires_at"])
    op.create_index("ix_tasks_state_expires_at", "tasks", ["state", "expires_at"])
    op.create_index("ix_grants_task_state", "grants", ["task_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_grants_task_state", table_name="grants")
    op.drop_index("ix_tasks_state_expires_at", table_name="tasks")
    op.drop_index("ix_grants_state_expires_at", table_name="grants")
