"""decision chain index: the facts a credential request ranks its task's history on, covered

The request path's compact chain history (broker/chain/store.py ``compact_history``) ranks every
decision of the task by its signature (action, resource, outcome, tier, consequence, sensitivity,
external) and time. Those columns sit after the large JSON ``record`` in the row, so without a
covering index each row costs a walk through the record's overflow pages (SQLite): ~50-100 µs per
step of history. With this index the ranking reads the index alone.

Revision ID: 0018
Revises: 0017
"""

from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

COLUMNS = [
    "task_id",
    "action",
    "resource",
    "outcome",
    "tier",
    "consequence",
    "sensitivity",
    "external",
    "created_at",
    "decision_id",
]


def upgrade() -> None:
    op.create_index("ix_decisions_task_chain", "decisions", COLUMNS)


def downgrade() -> None:
    op.drop_index("ix_decisions_task_chain", table_name="decisions")
