"""The credential request with approvals and reviews around it, under the task's chain lock.

- No ``approval_id``: decide as usual; a ``step_up`` opens (or reuses) an approval whose id goes
  back with the 202.
- An ``approval_id`` still pending: decide as usual with the approval presented but not granted
  (``step_up`` again, 202, nothing consumed).
- An approved one: check the binding, consume it (single use) *before* issuing, decide again with
  the approval granted (hard forbids, the ceiling and the chain detectors still apply) and issue.
  If anything fails after consumption, the approval stays consumed and the failure is recorded.
- An allowed ``review``-mode action with a credential is queued for post-action review.
"""

from __future__ import annotations

import dataclasses
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any, Protocol

from broker.approvals.model import ApprovalState
from broker.approvals.reviews import ReviewService
from broker.approvals.service import ApprovalService
from broker.decisions import ApprovalContext
from broker.errors import BrokerError
from broker.metrics import Metrics
from broker.models import Agent, Mode, Outcome, Resource
from broker.services.tasks import CredentialResult, TaskService, refuse_inject_only

# kinds whose credential never leaves the broker: the gateway injects it (broker/gateway)


class TaskLocks(Protocol):
    def lock(self, task_id: str) -> AbstractContextManager[Any]: ...


class CredentialFlow:
    def __init__(
        self,
        tasks: TaskService,
        approvals: ApprovalService,
        reviews: ReviewService,
        locks: TaskLocks,
        metrics: Metrics,
    ) -> None:
        self.tasks = tasks
        self.approvals = approvals
        self.reviews = reviews
        self.locks = locks
        self.metrics = metrics

    def request(
        self,
        agent: Agent,
        task_id: str,
        action: str,
        resource: str,
        approval_id: str | None = None,
        *,
        injected: bool = False,
    ) -> CredentialResult:
        """Decide and issue; step-up approvals are opened, checked and consumed here; an error
        looking an approval up never yields a credential. One request of a task at a time goes
        through the chain detectors (the task's lock).

        ``injected``: the caller is the gateway, which injects the credential into one upstream
        call and never returns it. A resource whose credential must stay with the broker (kind
        ``http_api``) is refused to anyone else before anything is decided."""
        with self.locks.lock(task_id):
            result = self._request(agent, task_id, action, resource, approval_id, injected)
        d = result.decision
        self.metrics.decisions.labels(d.outcome.value, d.tier.value, d.mode.value).inc()
        if result.credential is not None:
            self.metrics.issued.labels(result.credential.kind).inc()
        return result

    def _request(
        self, agent: Agent, task_id: str, action: str, resource: str, approval_id: str | None, injected: bool
    ) -> CredentialResult:
        if approval_id is not None:
            result = self._with_approval(agent, task_id, action, resource, approval_id, injected)
        else:
            result = self.tasks.request_credential(agent, task_id, action, resource, None, injected=injected)
            if result.decision.outcome is Outcome.STEP_UP:
                task = self.tasks.task_for(agent, task_id)
                target = self._resource(resource)
                if target is None:  # the engine never asks for step-up on an unknown resource
                    raise BrokerError(f'resource "{resource}" vanished while opening an approval')
                approval = self.approvals.open_for(agent, task, result.decision, action, target)
                result = dataclasses.replace(result, approval_id=approval.approval_id)
        d = result.decision
        if d.outcome is Outcome.ALLOW and d.mode is Mode.REVIEW and result.credential is not None:
            self.reviews.enqueue(agent.name, task_id, d, action, resource, result.grant_id)
        return result

    def _resource(self, name: str) -> Resource | None:
        store = self.tasks.store
        with store.read() as conn:
            return store.get_resource(conn, name)

    def _with_approval(
        self, agent: Agent, task_id: str, action: str, resource: str, approval_id: str, injected: bool
    ) -> CredentialResult:
        task = self.tasks.task_for(agent, task_id)
        target = self._resource(resource)
        if not injected:  # before the approval is consumed
            refuse_inject_only(task_id, resource, target)
        self.tasks.ensure_active(task, datetime.now(UTC))  # a dead task must not burn the approval
        state = self.approvals.check(agent, task, action, target, approval_id, resource)
        if state is ApprovalState.PENDING:
            result = self.tasks.request_credential(
                agent,
                task_id,
                action,
                resource,
                ApprovalContext(approval_id=approval_id, approved=False),
                injected=injected,
            )
            return (
                dataclasses.replace(result, approval_id=approval_id)
                if result.decision.outcome is Outcome.STEP_UP
                else result
            )
        self.approvals.consume(agent, task, approval_id)
        try:
            result = self.tasks.request_credential(
                agent,
                task_id,
                action,
                resource,
                ApprovalContext(approval_id=approval_id, approved=True),
                injected=injected,
            )
        except BrokerError as exc:
            self.approvals.finish(agent, task, approval_id, decision_id=None, grant_id=None, error=exc.message)
            raise
        except Exception as exc:
            self.approvals.finish(
                agent,
                task,
                approval_id,
                decision_id=None,
                grant_id=None,
                error=f"internal error ({type(exc).__name__})",
            )
            raise
        error = (
            None
            if result.credential is not None
            else (f"decision at collection was {result.decision.outcome.value}; nothing issued")
        )
        self.approvals.finish(
            agent,
            task,
            approval_id,
            decision_id=result.decision.decision_id,
            grant_id=result.grant_id,
            error=error,
        )
        return result
