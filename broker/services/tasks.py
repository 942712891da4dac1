"""The request flow: open a task, decide a credential request, issue, end the task.

Fail closed everywhere: identity is resolved before we get here; a missing profile, action or
resource, a decision error, or a backend error never yields a credential.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn, Protocol

import structlog

from broker.audit import AuditLog
from broker.audit.log import AuditBatch
from broker.backends.port import CredentialBackend, IssuedCredential, IssueRequest
from broker.chain import store as chain_store
from broker.chain.model import Prefetched, StepKind
from broker.chain.view import ChainRecords
from broker.chain.view import load as chain_records
from broker.decisions import ApprovalContext, ChainSummary, Decision, DecisionEngine, DecisionInput
from broker.errors import BrokerError, Conflict, Denied, InvalidInput, NotFound
from broker.logging import get_logger
from broker.models import (
    Action,
    Agent,
    DecisionId,
    Delegation,
    Grant,
    GrantId,
    GrantState,
    Outcome,
    Resource,
    Task,
    TaskId,
    TaskProfile,
    TaskState,
    Tier,
    VerifiedHuman,
    effective_profile,
)
from broker.secrets import Fingerprinter
from broker.services.registry import INJECT_ONLY_KINDS
from broker.services.revocation import RevocationReport, RevocationService
from broker.store.repo import Store, utcnow

log = get_logger("nhi-broker.tasks")
MAX_DELEGATION_DEPTH = 8


@dataclass(frozen=True, slots=True)
class CredentialResult:
    decision: Decision
    credential: IssuedCredential | None
    grant_id: str | None = None
    approval_id: str | None = None


# grant_id, task_id, agent, {fingerprint: secret length} (the length narrows leak matching)
IssuedHook = Callable[[str, str, str, dict[str, int]], None]


def refuse_inject_only(task_id: str, resource_name: str, resource: Resource | None) -> None:
    """403 for anyone but the gateway asking for a credential that must stay with the broker: an
    inject-only kind, or a resource registered with ``agent_may_hold: false``."""
    if resource is None:
        return
    if resource.kind in INJECT_ONLY_KINDS:
        raise Denied(
            f'resource "{resource_name}" is an {resource.kind} resource: its credential is only '
            f"injected by the gateway (/v1/tasks/{task_id}/gateway/{resource_name}/...), never "
            "handed out"
        )
    if not resource.agent_may_hold:
        raise Denied(
            f'resource "{resource_name}" does not allow its credential to be handed to an agent '
            "(agent_may_hold: false): the broker makes the calls that need it"
        )


@dataclass(frozen=True, slots=True)
class RequestRead:
    """Everything a credential request reads from the store, read once, in one connection, under
    the task's lock: the task, its profile and the resource (through the registry cache), the
    task's chain history (read once: the decision and the chain detectors both use it; compact,
    so its size does not grow with the history: :func:`broker.chain.store.compact_history`) and
    the number of grants it holds."""

    task: Task
    profile: TaskProfile | None
    resource: Resource | None
    history: chain_store.CompactHistory
    grants_active: int


@dataclass(frozen=True, slots=True)
class DelegationNode:
    """A delegated sub-task and the sub-tasks it delegated in turn."""

    task: Task
    children: tuple[DelegationNode, ...]


@dataclass(frozen=True, slots=True)
class TaskView:
    """A task with its chain, for the admin chain view."""

    task: Task
    summary: ChainSummary
    chain: ChainRecords
    delegations: tuple[DelegationNode, ...]  # the tree of delegated sub-tasks


class ChainGate(Protocol):
    """The chain detectors as the request flow sees them (:class:`broker.chain.service.ChainService`).

    Not optional: a :class:`TaskService` cannot be built without one, so no request can pass
    without the detectors having seen it."""

    def review_request(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action: str,
        resource: str,
        *,
        prefetched: Prefetched | None = None,
    ) -> tuple[Decision, Any]: ...

    def escalate_request(self, agent: Agent, task: Task, decision: Decision, hit: Any) -> BrokerError: ...

    def full_window(self) -> timedelta:
        """How far back a request reads its task's credential requests in full (the burst window);
        older steps are read compacted (:func:`broker.chain.store.compact_history`)."""
        ...

    def after_issue(
        self,
        grant_id: str,
        task_id: str,
        agent: str,
        fingerprints: Mapping[str, int],
        *,
        state: TaskState | None = None,
    ) -> None: ...

    def after_request(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action: str,
        resource: str,
        *,
        prefetched: Prefetched | None = None,
    ) -> None: ...


class _Recorded(Exception):
    """A backend failure already recorded with its decision (one transaction): re-raised as is."""

    def __init__(self, error: BrokerError) -> None:
        super().__init__(error.message)
        self.error = error


class TaskService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        engine: Callable[[], DecisionEngine],
        catalog: Callable[[], Mapping[str, Action]],
        backends: Mapping[str, CredentialBackend],
        revocations: RevocationService,
        fingerprint: Fingerprinter,
        chain: ChainGate,
        *,
        on_issued: Sequence[IssuedHook] = (),
    ) -> None:
        # fail closed by construction: every collaborator the request flow relies on is required
        for name, value in (
            ("store", store),
            ("audit", audit),
            ("engine", engine),
            ("catalog", catalog),
            ("revocations", revocations),
            ("fingerprint", fingerprint),
            ("chain", chain),
        ):
            if value is None:
                raise TypeError(f"TaskService needs {name}: the request flow cannot run without it")
        self.store = store
        self.audit = audit
        self.engine = engine
        self.catalog = catalog
        self.backends = backends
        self.revocations = revocations
        self.fingerprint = fingerprint
        self.chain = chain
        # the chain's own post-issue check always runs, after the other hooks (the scanner index)
        self.on_issued: tuple[IssuedHook, ...] = tuple(on_issued)

    # -- tasks ---------------------------------------------------------------------------
    def _refuse_task(self, agent: Agent, profile_name: str, reason: str, message: str) -> NoReturn:
        """Audit a refused task opening (``task.refused``), then refuse it (403)."""
        with self.store.write() as conn:
            self.audit.append(
                conn,
                "task.refused",
                actor=agent.name,
                outcome="denied",
                data={"profile": profile_name, "reason": reason},
            )
        raise Denied(message)

    def open_task(
        self,
        agent: Agent,
        profile_name: str,
        purpose: str,
        on_behalf_of: str | None,
        lifetime_seconds: int | None = None,
        *,
        acting_for: VerifiedHuman | None = None,
        scope: tuple[str, ...] | None = None,
    ) -> Task:
        """``acting_for``: the person an exchanged token proved; a typed ``on_behalf_of`` that names
        someone else is refused. ``scope``: the profiles an exchanged token was narrowed to."""
        if scope is not None and profile_name not in scope:
            self._refuse_task(
                agent,
                profile_name,
                "profile outside the token's scope",
                f'this access token is scoped to profiles {list(scope)}; it may not open a task under "{profile_name}"',
            )
        if acting_for is not None:
            if on_behalf_of is not None and on_behalf_of not in (acting_for.subject, acting_for.principal):
                raise InvalidInput(
                    "on_behalf_of",
                    f"the access token proves this task acts for "
                    f"{acting_for.principal}; leave on_behalf_of out or name them",
                )
            on_behalf_of = acting_for.principal
        if profile_name not in agent.profiles:
            self._refuse_task(
                agent,
                profile_name,
                "profile not allowed for agent",
                f'agent "{agent.name}" may not open tasks under profile "{profile_name}"; '
                f"allowed: {list(agent.profiles)}",
            )
        with self.store.read() as conn:
            profile = self.store.get_profile(conn, profile_name)
        if profile is None:
            raise InvalidInput("profile", f'task profile "{profile_name}" does not exist')
        lifetime = min(lifetime_seconds or profile.max_lifetime_seconds, profile.max_lifetime_seconds)
        now = utcnow()
        task = Task(
            task_id=TaskId("tsk_" + uuid.uuid4().hex),
            agent=agent.name,
            profile=profile.name,
            purpose=purpose,
            on_behalf_of=on_behalf_of,
            state=TaskState.ACTIVE,
            created_at=now,
            expires_at=now + timedelta(seconds=lifetime),
            acting_for=acting_for,
        )
        structlog.contextvars.bind_contextvars(task_id=task.task_id)  # this request's log lines from here on
        with self.store.write() as conn:
            self.store.create_task(conn, task)
            self.audit.append(
                conn,
                "task.opened",
                actor=agent.name,
                task_id=task.task_id,
                outcome="active",
                data={
                    "profile": profile.name,
                    "purpose": purpose,
                    "on_behalf_of": on_behalf_of,
                    "acting_for_verified": acting_for is not None,
                    "expires_at": task.expires_at.isoformat(),
                },
            )
        return task

    def delegate(
        self,
        agent: Agent,
        task_id: str,
        *,
        to_agent: str,
        actions: Sequence[str],
        ceiling: Tier,
        lifetime_seconds: int | None,
        purpose: str,
    ) -> Task:
        """Hand a narrower sub-task to another registered agent: actions ⊆ the parent's, ceiling ≤
        the parent's, lifetime ≤ the parent's remaining. Widening is refused with the reason."""
        parent = self.task_for(agent, task_id)
        now = datetime.now(UTC)
        self.ensure_active(parent, now)
        with self.store.read() as conn:
            profile = self.store.get_profile(conn, parent.profile)
            sub = self.store.get_agent(conn, to_agent)
        if profile is None:
            raise Conflict(f'task profile "{parent.profile}" no longer exists')
        if sub is None:
            raise InvalidInput("agent", f'"{to_agent}" is not a registered agent')
        if sub.name == agent.name:
            raise InvalidInput("agent", "a task cannot be delegated to its own agent")
        mine = effective_profile(profile, parent)
        wider = [a for a in actions if a not in mine.allowed_actions]
        if wider or not actions:
            raise Denied(
                f"delegation refused: actions must be a non-empty subset of this task's "
                f"{list(mine.allowed_actions)}; not allowed: {wider}",
                details={"reason": "widening"},
            )
        if ceiling.rank > mine.ceiling.rank:
            raise Denied(
                f"delegation refused: ceiling {ceiling.value} is above this task's ceiling {mine.ceiling.value}",
                details={"reason": "widening"},
            )
        remaining = int((parent.expires_at - now).total_seconds())
        if lifetime_seconds is not None and lifetime_seconds > remaining:
            raise Denied(
                f"delegation refused: lifetime {lifetime_seconds}s is longer than this task's remaining {remaining}s",
                details={"reason": "widening"},
            )
        lifetime = min(lifetime_seconds or remaining, remaining)
        child = Task(
            task_id=TaskId("tsk_" + uuid.uuid4().hex),
            agent=sub.name,
            profile=parent.profile,
            purpose=purpose,
            on_behalf_of=parent.on_behalf_of,
            state=TaskState.ACTIVE,
            created_at=utcnow(),
            expires_at=utcnow() + timedelta(seconds=lifetime),
            acting_for=parent.acting_for,
            parent_task_id=parent.task_id,
            delegation=Delegation(tuple(dict.fromkeys(actions)), ceiling, agent.name),
        )
        with self.store.write() as conn, self.audit.batch(conn) as audit:
            self.store.create_task(conn, child)
            chain_store.add_event(
                conn,
                task_id=parent.task_id,
                kind=StepKind.DELEGATION,
                detail={
                    "child_task_id": child.task_id,
                    "agent": sub.name,
                    "actions": list(child.delegation.actions) if child.delegation else [],
                    "ceiling": ceiling.value,
                },
            )
            audit.append(
                "task.delegated",
                actor=agent.name,
                task_id=parent.task_id,
                outcome="active",
                data={
                    "child_task_id": child.task_id,
                    "agent": sub.name,
                    "actions": list(actions),
                    "ceiling": ceiling.value,
                    "expires_at": child.expires_at.isoformat(),
                },
            )
            audit.append(
                "task.opened",
                actor=agent.name,
                task_id=child.task_id,
                outcome="active",
                data={
                    "profile": child.profile,
                    "purpose": purpose,
                    "delegated_from": parent.task_id,
                    "agent": sub.name,
                    "expires_at": child.expires_at.isoformat(),
                },
            )
        return child

    def tree(self, task_id: str) -> tuple[DelegationNode, ...]:
        """The delegation tree under a task (children, their children...), for the chain view."""
        with self.store.read() as conn:
            return self._tree(conn, task_id, depth=0)

    def _tree(self, conn: Any, task_id: str, depth: int) -> tuple[DelegationNode, ...]:
        if depth >= MAX_DELEGATION_DEPTH:
            return ()
        return tuple(
            DelegationNode(c, self._tree(conn, c.task_id, depth + 1)) for c in self.store.child_tasks(conn, task_id)
        )

    def get(self, task_id: str) -> Task:
        with self.store.read() as conn:
            task = self.store.get_task(conn, task_id)
        if task is None:
            raise NotFound(f'task "{task_id}" does not exist')
        return task

    def view(self, task_id: str) -> TaskView:
        task = self.get(task_id)
        return TaskView(task, self.chain_summary(task_id), chain_records(self.store, task_id), self.tree(task_id))

    def task_for(self, agent: Agent, task_id: str) -> Task:
        with self.store.read() as conn:
            task = self.store.get_task(conn, task_id)
        if task is None or task.agent != agent.name:
            raise NotFound(f'task "{task_id}" not found for agent "{agent.name}"')
        return task

    def ensure_active(self, task: Task, now: datetime) -> None:
        if task.state is TaskState.ACTIVE and task.expires_at <= now:
            self.revocations.revoke_task(
                task.task_id,
                reason="task lifetime exceeded",
                state=TaskState.EXPIRED,
                actor="broker",
                audit_kind="task.expired",
            )
            raise Conflict(f'task "{task.task_id}" has expired', details={"state": TaskState.EXPIRED.value})
        if task.state is not TaskState.ACTIVE:
            raise Conflict(
                f'task "{task.task_id}" is {task.state.value}: {task.state_reason or "no reason"}',
                details={"state": task.state.value, "reason": task.state_reason},
            )

    def end_task(self, agent: Agent, task_id: str) -> RevocationReport:
        """End the agent's task (state ``ended``) and revoke what it holds."""
        task = self.task_for(agent, task_id)
        if task.state is not TaskState.ACTIVE:
            raise Conflict(f'task "{task_id}" is already {task.state.value}', details={"state": task.state.value})
        return self.revocations.revoke_task(
            task_id, reason="ended by agent", state=TaskState.ENDED, actor=agent.name, audit_kind="task.ended"
        )

    # -- credentials ---------------------------------------------------------------------
    def chain_summary(self, task_id: str) -> ChainSummary:
        with self.store.read() as conn:
            return self._chain(conn, task_id)

    def _chain(self, conn: Any, task_id: str) -> ChainSummary:
        rows = self.store.decision_steps(conn, task_id)
        active = self.store.count_active_grants(conn, task_id)
        return self._summary(rows, active)

    def _summary(self, rows: Sequence[Any], active: int) -> ChainSummary:
        """The chain summary of the task's decisions (rows with ``action``, ``tier``, ``outcome``
        in order: the store's decision steps or the history's credential requests)."""
        allowed = [r for r in rows if r.outcome is Outcome.ALLOW]
        catalog = self.catalog()
        max_tier = max((r.tier for r in allowed), key=lambda t: t.rank, default=None)
        return ChainSummary(
            steps=len(rows),
            actions=tuple(r.action for r in allowed),
            consequences=tuple(catalog[r.action].consequence.value for r in allowed if r.action in catalog),
            max_tier=max_tier,
            grants_active=active,
        )

    def _compact_summary(self, history: chain_store.CompactHistory, active: int) -> ChainSummary:
        """:meth:`_summary` of the compact history: the same summary as of the whole chain (every
        allowed tier is in the compact steps; the actions come in order of first appearance)."""
        catalog = self.catalog()
        allowed = [s for s in history.steps if s.kind is StepKind.CREDENTIAL_REQUEST and s.outcome is Outcome.ALLOW]
        max_tier = max((s.tier for s in allowed if s.tier is not None), key=lambda t: t.rank, default=None)
        return ChainSummary(
            steps=history.requests,
            actions=history.allowed_actions,
            consequences=tuple(catalog[a].consequence.value for a in history.allowed_actions if a in catalog),
            max_tier=max_tier,
            grants_active=active,
        )

    def read_request(self, agent: Agent, task_id: str, resource_name: str) -> RequestRead:
        """The one read of a credential request (see :class:`RequestRead`); 404 for another
        agent's task."""
        with self.store.read() as conn:
            registry = self.store.registry(conn)
            task = self.store.get_task(conn, task_id)
            if task is None or task.agent != agent.name:
                raise NotFound(f'task "{task_id}" not found for agent "{agent.name}"')
            profile = self.store.cached_profile(registry, task.profile)
            resource = self.store.cached_resource(registry, resource_name)
            consequences = {name: a.consequence.value for name, a in self.catalog().items()}
            since = utcnow() - self.chain.full_window()
            history = chain_store.compact_history(conn, task_id, consequences, since=since)
            active = self.store.count_active_grants(conn, task_id)
        return RequestRead(task, profile, resource, history, active)

    def decide(
        self, agent: Agent, task: Task, action_name: str, resource_name: str, approval: ApprovalContext | None = None
    ) -> tuple[Decision, Resource | None]:
        with self.store.read() as conn:
            profile = self.store.get_profile(conn, task.profile)
            resource = self.store.get_resource(conn, resource_name)
            chain = self._chain(conn, task.task_id)
        return self._decide(agent, task, profile, resource, chain, action_name, resource_name, approval), resource

    def _decide(
        self,
        agent: Agent,
        task: Task,
        profile: TaskProfile | None,
        resource: Resource | None,
        chain: ChainSummary,
        action_name: str,
        resource_name: str,
        approval: ApprovalContext | None,
    ) -> Decision:
        if profile is None:
            raise Conflict(f'task profile "{task.profile}" no longer exists')
        profile = effective_profile(profile, task)
        request = DecisionInput(
            decision_id=DecisionId("dec_" + uuid.uuid4().hex),
            agent=agent,
            profile=profile,
            task=task,
            action_name=action_name,
            resource_name=resource_name,
            action=self.catalog().get(action_name),
            resource=resource,
            chain=chain,
            now=datetime.now(UTC),
            approval=approval,
        )
        return self.engine().decide(request)

    def record_decision(self, agent: Agent, task: Task, decision: Decision, action: str, resource: str) -> None:
        with self.store.write() as conn, self.audit.batch(conn) as audit:
            self._write_decision(conn, audit, agent, task, decision, action, resource)

    def _write_decision(
        self, conn: Any, audit: AuditBatch, agent: Agent, task: Task, decision: Decision, action: str, resource: str
    ) -> None:
        """The decision and its audit event, in the caller's transaction (the event joins the
        caller's audit batch)."""
        kind = {
            Outcome.ALLOW: "decision.allowed",
            Outcome.DENY: "decision.denied",
            Outcome.STEP_UP: "decision.step_up",
        }[decision.outcome]
        self.store.add_decision(conn, decision.record(), task.task_id, agent.name, action, resource, utcnow())
        audit.append(
            kind,
            actor=agent.name,
            task_id=task.task_id,
            outcome=decision.outcome.value,
            data={
                "decision_id": decision.decision_id,
                "action": action,
                "resource": resource,
                "tier": decision.tier.value,
                "score": decision.score,
                "mode": decision.mode.value,
                "ttl_seconds": decision.ttl_seconds,
                "reasons": list(decision.reasons),
                "factors": decision.factors,
                "policy_ids": list(decision.policy_ids),
                "bundle_hash": decision.bundle_hash,
            },
        )

    def _persist_handle(self, task_id: str, backend: str, reference: dict[str, Any]) -> None:
        with self.store.write() as conn:
            self.store.add_handle(conn, task_id, backend, reference)

    def request_credential(
        self,
        agent: Agent,
        task_id: str,
        action_name: str,
        resource_name: str,
        approval: ApprovalContext | None = None,
        *,
        injected: bool = False,
    ) -> CredentialResult:
        """Decide and issue, with one read of the store before the backend call and one write
        transaction after it (decision, grant and their audit events together). The caller holds
        the task's lock. ``injected``: the caller is the gateway (see
        :meth:`broker.approvals.flow.CredentialFlow.request`)."""
        read = self.read_request(agent, task_id, resource_name)
        task, resource = read.task, read.resource
        if not injected:
            refuse_inject_only(task_id, resource_name, resource)
        self.ensure_active(task, datetime.now(UTC))
        chain = self._compact_summary(read.history, read.grants_active)
        decision = self._decide(agent, task, read.profile, resource, chain, action_name, resource_name, approval)
        # chain detectors (broker.chain), inline and before issuance: on a hit the decision is a deny
        # naming the detector, it is recorded, the task escalates and this request raises (403)
        prefetched = Prefetched(read.history.steps, read.profile, resource)
        decision, hit = self.chain.review_request(
            agent, task, decision, action_name, resource_name, prefetched=prefetched
        )
        if hit is not None or decision.outcome is not Outcome.ALLOW or resource is None:
            self.record_decision(agent, task, decision, action_name, resource_name)
        if hit is not None:
            raise self.chain.escalate_request(agent, task, decision, hit)
        if decision.outcome is not Outcome.ALLOW:
            return CredentialResult(decision=decision, credential=None)
        if resource is None:  # an allow always has a resolved resource; fail closed if not
            raise Conflict(f'resource "{resource_name}" vanished; try again')
        # an allow: its decision is written with the grant, after the backend call, in one
        # transaction (or with the failure, if issuance fails)
        try:
            return self.issue(agent, task, decision, action_name, resource, record_decision=True)
        finally:  # a post-issuance decision's detectors run now (chain.yaml ``detection``)
            self.chain.after_request(agent, task, decision, action_name, resource_name, prefetched=prefetched)

    def issue(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action_name: str,
        resource: Resource,
        *,
        record_decision: bool = False,
    ) -> CredentialResult:
        """Issue at the backend, then record the grant and ``credential.issued`` in one transaction.
        ``record_decision``: the (allow) decision is not recorded yet; it is written in that same
        transaction, or with the failure when issuance fails, so it is never lost."""

        def decision_first(conn: Any, audit: AuditBatch) -> None:
            if record_decision:
                self._write_decision(conn, audit, agent, task, decision, action_name, resource.name)

        try:
            return self._issue(agent, task, decision, action_name, resource, decision_first)
        except _Recorded as done:
            raise done.error from done.error.__cause__  # the backend's error, recorded with its decision
        except BaseException:
            if record_decision and not self._decision_recorded(decision.decision_id):
                self.record_decision(agent, task, decision, action_name, resource.name)
            raise

    def _decision_recorded(self, decision_id: str) -> bool:
        with self.store.read() as conn:
            return self.store.get_decision(conn, decision_id) is not None

    def _issue(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action_name: str,
        resource: Resource,
        decision_first: Callable[[Any, AuditBatch], None],
    ) -> CredentialResult:
        action = self.catalog().get(action_name)
        if action is None:  # the catalog was reloaded between decision and issuance
            raise Conflict(f'action "{action_name}" is no longer in the catalog; try again')
        backend = self.backends.get(resource.kind)
        if backend is None:
            raise BrokerError(f'no backend is configured for resource kind "{resource.kind}"')
        grant_id = GrantId("grt_" + uuid.uuid4().hex)
        try:
            credential = backend.issue(
                IssueRequest(
                    task=task,
                    agent=agent,
                    action=action,
                    resource=resource,
                    ttl_seconds=decision.ttl_seconds,
                    uses=decision.uses,
                    decision_id=decision.decision_id,
                    grant_id=grant_id,
                    persist_handle=lambda ref: self._persist_handle(task.task_id, resource.kind, ref),
                )
            )
        except BrokerError as exc:
            with self.store.write() as conn, self.audit.batch(conn) as audit:
                decision_first(conn, audit)
                audit.append(
                    "credential.failed",
                    actor=agent.name,
                    task_id=task.task_id,
                    outcome="error",
                    data={"decision_id": decision.decision_id, "backend": resource.kind, "error": exc.message},
                )
            raise _Recorded(exc) from exc
        lengths = {self.fingerprint(s): len(s.reveal()) for s in credential.secrets.values()}
        # a backend may also fingerprint the secret material behind the credential (e.g. the KV
        # values a wrapping token unwraps to), so the scanner recognises those when they leak
        lengths.update(credential.extra.get("fingerprint_lengths") or {})
        fingerprints = list(dict.fromkeys([*lengths, *(credential.extra.get("fingerprints") or [])]))
        # the broker's own expiry is the tier's TTL even when the backend's is longer
        now = datetime.now(UTC)
        expires_at = min(credential.expires_at, now + timedelta(seconds=decision.ttl_seconds))
        # what was granted: the decision's TTL, or less when the backend capped it (recorded and
        # returned, never silently different); and how long the backend itself honours it
        granted = {
            "ttl_seconds": decision.ttl_seconds,
            "granted_ttl_seconds": max(0, round((expires_at - now).total_seconds())),
            "backend_ttl_seconds": max(
                0, round(((credential.backend_expires_at or credential.expires_at) - now).total_seconds())
            ),
        }
        if granted["granted_ttl_seconds"] < decision.ttl_seconds - 5:
            log.warning("credential.ttl_capped_by_backend", backend=resource.kind, **granted)
        credential = replace(credential, public={**credential.public, **granted})
        # the decision, the grant and their two audit events: one transaction, one audit batch
        with self.store.write() as conn, self.audit.batch(conn) as audit:
            decision_first(conn, audit)
            if credential.task_handle is not None:
                self.store.add_handle(conn, task.task_id, resource.kind, credential.task_handle)
            self.store.add_grant(
                conn,
                Grant(
                    grant_id=grant_id,
                    task_id=task.task_id,
                    decision_id=decision.decision_id,
                    backend=resource.kind,
                    resource=resource.name,
                    action=action.name,
                    lease_id=credential.lease_id,
                    accessor=credential.accessor,
                    fingerprints=tuple(fingerprints),
                    revocation=dict(credential.revocation),
                    covered_by_task_handle=credential.covered_by_task_handle,
                    public=dict(credential.public),
                    secret_lengths=lengths,
                    issued_at=utcnow(),
                    expires_at=expires_at,
                    state=GrantState.ACTIVE,
                ),
                agent=agent.name,
            )
            # read after the grant's insert, in its transaction: see Store.task_state_shared
            state = self.store.task_state_shared(conn, task.task_id)
            audit.append(
                "credential.issued",
                actor=agent.name,
                task_id=task.task_id,
                outcome="issued",
                data={
                    "grant_id": grant_id,
                    "decision_id": decision.decision_id,
                    "backend": resource.kind,
                    "resource": resource.name,
                    "action": action.name,
                    "accessor": credential.accessor,
                    "lease_id": credential.lease_id,
                    "fingerprints": fingerprints,
                    "expires_at": expires_at.isoformat(),
                    "uses": decision.uses,
                    **granted,
                    "revoke_at_expiry": bool(credential.revocation.get("revoke_at_expiry")),
                },
            )
        for hook in self.on_issued:
            try:
                hook(grant_id, task.task_id, agent.name, lengths)
            except Exception:  # a hook must never lose a credential's record
                log.exception("issued_hook.failed", grant_id=grant_id)
        try:  # the task escalated on another replica while we issued: revoke again, this grant too
            self.chain.after_issue(grant_id, task.task_id, agent.name, lengths, state=state)
        except Exception:
            log.exception("issued_hook.failed", grant_id=grant_id)
        return CredentialResult(decision=decision, credential=credential, grant_id=grant_id)
