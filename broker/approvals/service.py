"""Step-up approvals: open one for a ``step_up`` decision, approve (four-eyes) or deny it, and check
and consume it when the agent collects its credential.

Rules (docs/approvals.md):

- **Bound** to the exact request: task, agent, action, resource and the resource's scope hash.
- **Expires** ``approval_ttl_seconds`` after it was opened (default 600 s); approve and collect
  must both happen inside that window.
- **Four-eyes on authenticated subjects** (docs/people.md): only an authenticated person with the
  ``approver`` role votes (never a typed name, never the admin token). The agent's bound owner
  (``owner_identity``, compared by person and by every (issuer, subject) they are known as) is
  refused (403 ``four_eyes_required``); so is the agent itself; an agent without a bound owner has
  nothing approvable (403 ``owner_unbound``). Every refusal is audited (``approval.vote_refused``).
- **Single use**: collection flips ``approved`` to ``collected`` with one conditional update
  *before* anything is issued; a second collection finds nothing to flip (403).

- **Cancelled** with its task: when the task is quarantined, ended or expires, its open approvals
  become ``cancelled`` (in the transaction that ends the task).

The agent reads the state of its own task's approvals (``status``, long-polled through
:mod:`broker.approvals.waiting`); that read is not a chain step.

Every step is audited (``approval.requested|vote_refused|approved|denied|expired|refused|
collected|collect_failed|cancelled``), with the authenticated subject of whoever decided. No secret
ever reaches an approval, its audit events or the webhook.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, NoReturn

from sqlalchemy import Connection

from broker.approvals import store as db
from broker.approvals.model import Approval, ApprovalState, Vote, scope_hash
from broker.approvals.waiting import ApprovalSignals, wait_for_decision
from broker.audit import AuditLog
from broker.decisions import Decision
from broker.errors import Conflict, Denied, NotFound
from broker.logging import get_logger
from broker.models import Agent, ApprovalId, Resource, Task, TaskState
from broker.people.model import Caller, Role
from broker.people.service import Parties, RoleRequired
from broker.store.repo import Store, utcnow

log = get_logger("nhi-broker.approvals")
Notifier = Callable[[dict[str, Any]], None]
PartiesOf = Callable[[str], Parties]  # agent name -> its bound owner's and its own identities


class FourEyesRequired(Denied):
    code = "four_eyes_required"


class OwnerUnbound(Denied):
    code = "owner_unbound"


class ApprovalRefused(Denied):
    """The agent's collection was refused: unknown, bound elsewhere, denied, expired or used."""

    code = "approval_refused"


class ApprovalService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        *,
        ttl_seconds: int,
        parties: PartiesOf,
        console_url: str = "",
        notify: Notifier | None = None,
        clock: Callable[[], datetime] = utcnow,
        signals: ApprovalSignals | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.ttl = timedelta(seconds=ttl_seconds)
        self.parties = parties
        self.console_url = console_url.rstrip("/")  # notifications link to the approval's page
        self.notify = notify
        self.clock = clock
        self.signals = signals if signals is not None else ApprovalSignals()

    # -- opening ----------------------------------------------------------------------------------
    def open_for(self, agent: Agent, task: Task, decision: Decision, action: str, resource: Resource) -> Approval:
        """The approval for a ``step_up`` decision; an open one for the same request is reused."""
        now = self.clock()
        scope = scope_hash(action, resource)
        with self.store.write() as conn:
            existing = db.find_pending(
                conn,
                task_id=task.task_id,
                agent=agent.name,
                action=action,
                resource=resource.name,
                scope=scope,
                now=now,
            )
            if existing is not None:
                return existing
            approval = Approval(
                approval_id=ApprovalId("apr_" + uuid.uuid4().hex),
                task_id=task.task_id,
                agent=agent.name,
                owner=agent.owner,
                action=action,
                resource=resource.name,
                scope_hash=scope,
                decision_id=decision.decision_id,
                tier=decision.tier,
                reasons=decision.reasons,
                state=ApprovalState.PENDING,
                votes=(),
                decided_by=None,
                decided_by_subject=None,
                decision_reason=None,
                created_at=now,
                expires_at=now + self.ttl,
                decided_at=None,
                collected_at=None,
                collected_decision_id=None,
                grant_id=None,
                collect_error=None,
            )
            db.insert_approval(conn, approval)
            self.audit.append(
                conn,
                "approval.requested",
                actor=agent.name,
                task_id=task.task_id,
                outcome=ApprovalState.PENDING.value,
                data=self._facts(approval),
            )
        if self.notify is not None:
            self.notify(
                {
                    "event": "approval.pending",
                    **self._facts(approval),
                    "owner": approval.owner,
                    "reasons": list(approval.reasons),
                    "approve": f"/v1/approvals/{approval.approval_id}/approve",
                    "deny": f"/v1/approvals/{approval.approval_id}/deny",
                    "url": f"{self.console_url}/approvals/{approval.approval_id}",
                }
            )
        return approval

    @staticmethod
    def _facts(a: Approval) -> dict[str, Any]:
        return {
            "approval_id": a.approval_id,
            "task_id": a.task_id,
            "agent": a.agent,
            "action": a.action,
            "resource": a.resource,
            "tier": a.tier.value,
            "decision_id": a.decision_id,
            "expires_at": a.expires_at.isoformat(),
        }

    # -- reading ----------------------------------------------------------------------------------
    def expire_due(self) -> int:
        """Mark open approvals whose window passed as ``expired`` (audited once each)."""
        now = self.clock()
        count = 0
        with self.store.write() as conn:
            for a in db.due_to_expire(conn, now):
                if db.mark_expired(conn, a.approval_id, now):
                    count += 1
                    self.audit.append(
                        conn,
                        "approval.expired",
                        actor="broker",
                        task_id=a.task_id,
                        outcome=ApprovalState.EXPIRED.value,
                        data=self._facts(a),
                    )
        return count

    def list(self, state: ApprovalState | None = None, limit: int = 500) -> list[Approval]:
        """Approvals as of now (oldest first)."""
        self.expire_due()
        now = self.clock()
        with self.store.read() as conn:
            return [a.as_of(now) for a in db.list_approvals(conn, state, limit)]

    def get(self, approval_id: str) -> Approval:
        with self.store.read() as conn:
            approval = db.get_approval(conn, approval_id)
        if approval is None:
            raise NotFound(f'approval "{approval_id}" does not exist')
        return approval

    def view(self, approval_id: str) -> Approval:
        """The approval as of now (``expired`` once its window passed while open)."""
        return self.get(approval_id).as_of(self.clock())

    # -- the agent waits ---------------------------------------------------------------------------
    def _own(self, task: Task, approval_id: str) -> Approval:
        """The approval, when it belongs to ``task`` (already checked to be the caller's)."""
        with self.store.read() as conn:
            a = db.get_approval(conn, approval_id)
        if a is None or a.task_id != task.task_id:
            raise NotFound(f'approval "{approval_id}" of task "{task.task_id}" not found')
        return a

    async def status(self, task: Task, approval_id: str, wait_seconds: float) -> dict[str, Any]:
        """The state of an approval of the caller's task, waiting up to ``wait_seconds`` for a
        decision while it is pending. Not a chain step: nothing is recorded."""
        self._own(task, approval_id)  # 404 before any wait

        def look() -> ApprovalState:
            return self._own(task, approval_id).state_at(self.clock())

        await wait_for_decision(approval_id, look, wait_seconds, self.signals)
        a = self._own(task, approval_id)
        state = a.state_at(self.clock())
        body: dict[str, Any] = {
            "approval_id": a.approval_id,
            "task_id": a.task_id,
            "state": state.value,
            "action": a.action,
            "resource": a.resource,
            "tier": a.tier.value,
            "expires_at": a.expires_at.isoformat(),
            "decided_at": a.decided_at.isoformat() if a.decided_at else None,
        }
        if state in (ApprovalState.DENIED, ApprovalState.CANCELLED):
            body["reason"] = a.decision_reason
        if state is ApprovalState.APPROVED:
            body["next"] = "repeat the credential request with this approval_id before expires_at (single use)"
        return body

    # -- the task ends ------------------------------------------------------------------------------
    def cancel_for_task(self, conn: Connection, task_id: str, state: TaskState, reason: str) -> None:
        """In the transaction that quarantines, ends or expires the task: its open approvals are
        ``cancelled`` (audited ``approval.cancelled``); waiters here are woken."""
        why = f"task {state.value}: {reason}"
        cancelled = db.cancel_open_for_task(conn, task_id, reason=why, now=self.clock())
        for a in cancelled:
            self.audit.append(
                conn,
                "approval.cancelled",
                actor="broker",
                task_id=task_id,
                outcome=ApprovalState.CANCELLED.value,
                data={**self._facts(a), "reason": why, "was": a.state.value},
            )
        for a in cancelled:
            self.signals.notify(a.approval_id)

    # -- approvers ----------------------------------------------------------------------------------
    def approve(self, approval_id: str, caller: Caller, reason: str) -> Approval:
        """Granted by one authenticated approver who is neither the agent's bound owner nor the
        agent; an agent without a bound owner has nothing approvable (fail closed)."""
        a = self._actionable(approval_id, "approve")
        self._check_voter(a, caller, "approve")
        now = self.clock()
        votes = [*a.votes, Vote(caller.actor, caller.to_dict(), reason, now)]
        with self.store.write() as conn:
            if not db.decide(
                conn,
                a.approval_id,
                state=ApprovalState.APPROVED,
                votes=votes,
                by=caller.actor,
                by_subject=caller.to_dict(),
                reason=reason,
                now=now,
                from_states=(ApprovalState.PENDING.value,),
            ):
                raise Conflict(f'approval "{approval_id}" changed meanwhile; read it again')
            self.audit.append(
                conn,
                "approval.approved",
                actor=caller.actor,
                task_id=a.task_id,
                outcome="approved",
                data={**self._facts(a), "reason": reason, "subject": caller.to_dict()},
            )
        self.signals.notify(a.approval_id)
        return self.view(approval_id)

    def deny(self, approval_id: str, caller: Caller, reason: str) -> Approval:
        """Any approver may deny, the agent's owner too: saying no needs no second pair of eyes. An
        approved approval not yet collected can still be denied."""
        a = self._actionable(approval_id, "deny", also=(ApprovalState.APPROVED,))
        self._check_voter(a, caller, "deny")
        now = self.clock()
        with self.store.write() as conn:
            if not db.decide(
                conn,
                a.approval_id,
                state=ApprovalState.DENIED,
                votes=a.votes,
                by=caller.actor,
                by_subject=caller.to_dict(),
                reason=reason,
                now=now,
                from_states=db.OPEN,
            ):
                raise Conflict(f'approval "{approval_id}" changed meanwhile; read it again')
            self.audit.append(
                conn,
                "approval.denied",
                actor=caller.actor,
                task_id=a.task_id,
                outcome="denied",
                data={**self._facts(a), "reason": reason, "subject": caller.to_dict()},
            )
        self.signals.notify(a.approval_id)
        return self.view(approval_id)

    def _check_voter(self, a: Approval, caller: Caller, verb: str) -> None:
        if caller.person is None or Role.APPROVER not in caller.roles:
            self._refuse_vote(
                a,
                caller,
                f"only an authenticated person with the approver role may {verb} (the admin token is not a person)",
                RoleRequired,
            )
        parties = self.parties(a.agent)
        keys = caller.subject_keys()
        if keys & parties.agent:
            self._refuse_vote(a, caller, "the agent may not approve or deny its own request")
        if verb != "approve":
            return
        if parties.owner is None:
            self._refuse_vote(
                a,
                caller,
                f'agent "{a.agent}" has no bound owner (owner_identity); nothing it asks can be '
                f"approved until an admin binds one",
                OwnerUnbound,
            )
        if keys & parties.owner:
            self._refuse_vote(
                a,
                caller,
                f'{caller.actor} is the bound owner of agent "{a.agent}" and may '
                f"not approve its requests; another approver must",
            )

    def _actionable(self, approval_id: str, verb: str, also: tuple[ApprovalState, ...] = ()) -> Approval:
        self.expire_due()
        a = self.get(approval_id)
        state = a.state_at(self.clock())
        if state is not ApprovalState.PENDING and state not in also:
            raise Conflict(
                f'approval "{approval_id}" is {state.value}; only a pending approval can be '
                f"{'approved' if verb == 'approve' else 'denied'}",
                details={"state": state.value},
            )
        return a

    def _refuse_vote(self, a: Approval, caller: Caller, why: str, error: type[Denied] | None = None) -> NoReturn:
        self.audit.record(
            "approval.vote_refused",
            actor=caller.actor,
            task_id=a.task_id,
            outcome="denied",
            data={**self._facts(a), "why": why, "subject": caller.to_dict()},
        )
        raise (error or FourEyesRequired)(
            f"four-eyes rule: {why}" if error is None else why,
            details={"approval_id": a.approval_id, "rule": "four_eyes"},
        )

    # -- the agent collects ---------------------------------------------------------------------------
    def check(
        self,
        agent: Agent,
        task: Task,
        action: str,
        resource: Resource | None,
        approval_id: str,
        resource_name: str,
    ) -> ApprovalState:
        """``pending`` or ``approved`` for a request that matches its approval; otherwise 403."""
        self.expire_due()
        with self.store.read() as conn:
            a = db.get_approval(conn, approval_id)
        if a is None:
            self._refused(agent, task, approval_id, f'approval "{approval_id}" does not exist', None)
        assert a is not None
        mismatch = [
            name
            for name, ok in (
                ("agent", a.agent == agent.name),
                ("task", a.task_id == task.task_id),
                ("action", a.action == action),
                ("resource", a.resource == resource_name),
                ("scope", resource is not None and a.scope_hash == scope_hash(action, resource)),
            )
            if not ok
        ]
        if mismatch:
            shown = ["agent"] if "agent" in mismatch else mismatch  # never describe another agent's request
            self._refused(
                agent,
                task,
                approval_id,
                f"approval is bound to a different request (differs in: {', '.join(shown)})",
                a,
            )
        state = a.state_at(self.clock())
        if state is ApprovalState.DENIED:
            self._refused(agent, task, approval_id, f'approval was denied by "{a.decided_by}": {a.decision_reason}', a)
        if state is ApprovalState.EXPIRED:
            self._refused(agent, task, approval_id, f"approval expired at {a.expires_at.isoformat()}", a)
        if state is ApprovalState.COLLECTED:
            self._refused(agent, task, approval_id, "approval was already used (single use)", a)
        if state is ApprovalState.CANCELLED:
            self._refused(agent, task, approval_id, f"approval was cancelled: {a.decision_reason}", a)
        return state

    def consume(self, agent: Agent, task: Task, approval_id: str) -> None:
        with self.store.write() as conn:
            if not db.consume(conn, approval_id, self.clock()):
                won = False
            else:
                won = True
                self.audit.append(
                    conn,
                    "approval.consumed",
                    actor=agent.name,
                    task_id=task.task_id,
                    outcome="collected",
                    data={"approval_id": approval_id},
                )
        if not won:
            a = self.get(approval_id)
            self._refused(
                agent,
                task,
                approval_id,
                f"approval is {a.state_at(self.clock()).value}, not approved (already used?)",
                a,
            )

    def finish(
        self,
        agent: Agent,
        task: Task,
        approval_id: str,
        *,
        decision_id: str | None,
        grant_id: str | None,
        error: str | None,
    ) -> None:
        """What the consumed approval produced. It stays consumed whatever happened (fail closed)."""
        with self.store.write() as conn:
            db.record_collection(conn, approval_id, decision_id=decision_id, grant_id=grant_id, error=error)
            self.audit.append(
                conn,
                "approval.collected" if error is None else "approval.collect_failed",
                actor=agent.name,
                task_id=task.task_id,
                outcome="issued" if error is None else "error",
                data={
                    "approval_id": approval_id,
                    "decision_id": decision_id,
                    "grant_id": grant_id,
                    "error": error,
                },
            )

    def _refused(self, agent: Agent, task: Task, approval_id: str, why: str, a: Approval | None) -> None:
        state = a.state_at(self.clock()).value if a is not None and a.agent == agent.name else None
        self.audit.record(
            "approval.refused",
            actor=agent.name,
            task_id=task.task_id,
            outcome="denied",
            data={"approval_id": approval_id, "reason": why, "state": state},
        )
        raise ApprovalRefused(why, details={"approval_id": approval_id, "reason": why, "approval_state": state})
