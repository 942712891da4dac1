"""Just-in-time step-up approvals and the post-action review queue (issue 3, phase 2).

- :mod:`.model` — the approval and review records, their closed state sets, the scope hash.
- :mod:`.store` — the only SQL for both tables.
- :mod:`.service` — :class:`ApprovalService`: open an approval for a ``step_up`` decision, let
  approvers approve (four-eyes) or deny it, check and consume it when the agent collects.
- :mod:`.reviews` — :class:`ReviewService`: enqueue allowed ``review``-mode actions, mark fine or flag
  (a flag escalates the task through the chain).
"""

from broker.approvals.model import Approval, ApprovalState, Review, ReviewState, scope_hash
from broker.approvals.reviews import ReviewService
from broker.approvals.service import ApprovalService

__all__ = [
    "Approval",
    "ApprovalService",
    "ApprovalState",
    "Review",
    "ReviewService",
    "ReviewState",
    "scope_hash",
]
