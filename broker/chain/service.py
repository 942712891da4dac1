"""The chain service: track each task's steps, run the detectors inline, escalate.

``review_request`` runs before issuance on every credential request (from
:meth:`broker.services.tasks.TaskService.request_credential`): the detectors see the chain so far
and this request with its decision. For an allowed decision whose control mode ``chain.yaml``
checks after issuance (``detection.pre_issuance`` does not list it; by default ``monitor``), the
decision is only marked ``post_issuance`` there and ``after_request`` runs the same detectors right
after the credential is issued, on a small pool off the request's path; a hit escalates the task,
which revokes every grant it holds, the new one too (docs/chains.md, "Detection before or after
issuance"). On a hit the decision becomes a ``deny`` naming the detector,
it is recorded, and ``escalate`` revokes everything the task holds (outbox first), quarantines the
task, audits ``task.escalated`` with the detector and the steps, and alerts; the caller gets 403
:class:`Escalated` and no credential. ``report_leak``, ``flag_review`` and ``admin_revoke`` are
the entry points for the scanner, the review queue and the admin API.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection

from broker.audit import AuditLog
from broker.chain import store as chain_store
from broker.chain.config import ChainConfig, OnEscalation
from broker.chain.detectors import (
    ADMIN_REVOKE,
    DELEGATE_ESCALATED,
    LEAKED_SECRET,
    POST_ISSUANCE_CHECK_FAILED,
    REVIEW_FLAGGED,
)
from broker.chain.locks import TaskLocks
from broker.chain.model import ChainContext, ChainStep, Escalation, Hit, Prefetched, RecordedEvent, StepKind
from broker.chain.post_issuance import PostIssuancePool
from broker.chain.rules import ChainRules
from broker.decisions import Decision, Detection
from broker.errors import Conflict, Denied, InvalidInput, NotFound
from broker.logging import get_logger
from broker.models import Action, Agent, Outcome, Task, TaskState, effective_profile
from broker.secrets import Fingerprinter
from broker.services.revocation import RevocationService
from broker.store.repo import Store, utcnow

log = get_logger("nhi-broker.chain")
# what a finding summary may carry into the store and the audit trail (never the match itself)
FINDING_KEYS = ("rule", "rule_id", "source", "location", "line", "offset", "kind", "event_id", "fingerprint")


# chain entries that are not steps of this task's own work (the detectors do not count them); a
# gateway call's decision is already a credential-request step, its call record is not counted twice
_NOT_STEPS = (StepKind.ESCALATION, StepKind.DELEGATION, StepKind.DELEGATE_ESCALATED, StepKind.GATEWAY_CALL)


class Escalated(Denied):
    """403: this request escalated the chain; it gets no credential and the task is revoked."""

    code = "task_escalated"


def _denied_by(decision: Decision, hit: Hit) -> Decision:
    return replace(
        decision,
        outcome=Outcome.DENY,
        ttl_seconds=0,
        uses=0,
        reasons=(*decision.reasons, f"chain escalated by detector {hit.detector}: {hit.reason}"),
    )


class Alerter(Protocol):
    def send(self, payload: dict[str, Any]) -> None: ...


class ChainService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        revocations: RevocationService,
        rules: ChainRules,
        catalog: Callable[[], Mapping[str, Action]],
        fingerprint: Fingerprinter,
        locks: TaskLocks,
        alerter: Alerter | None = None,
        on_escalated: Callable[[str], None] | None = None,
        post_issuance: PostIssuancePool | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.revocations = revocations
        self.rules = rules
        self.catalog = catalog
        self.fingerprint = fingerprint
        self.alerter = alerter
        self.on_escalated = on_escalated
        self.locks = locks
        self._post = post_issuance if post_issuance is not None else PostIssuancePool()

    @property
    def config(self) -> ChainConfig:
        return self.rules.current.config

    def lock(self, task_id: str) -> AbstractContextManager[None]:
        """Serialises a task's requests (in this process, and across replicas on PostgreSQL: see
        :mod:`broker.chain.locks`), so two cannot pass the detectors blind to each other."""
        return self.locks.hold(task_id)

    # -- reading the chain ---------------------------------------------------------------------
    def _consequences(self) -> dict[str, str]:
        return {name: a.consequence.value for name, a in self.catalog().items()}

    def history(self, task_id: str, *, exclude: str | None = None, at: datetime | None = None) -> list[ChainStep]:
        """What the detectors read of a task's chain: its compact history (the newest step of each
        signature and every request inside the burst window ending at ``at``, the candidate's time
        — now if not given; :func:`chain_store.compact_history`), without ``exclude`` (the
        candidate, when it is already recorded)."""
        since = (at or utcnow()) - self.full_window()
        with self.store.read() as conn:
            return chain_store.compact_history(conn, task_id, self._consequences(), since=since, exclude=exclude).steps

    def full_window(self) -> timedelta:
        """How far back the detectors need every request (``burst``'s window; see
        :func:`chain_store.compact_history`)."""
        return timedelta(seconds=self.config.detectors.burst.window_seconds)

    def _detect(
        self, history: list[ChainStep], candidate: ChainStep, task: Task, prefetched: Prefetched | None = None
    ) -> Hit | None:
        if prefetched is not None:
            profile = prefetched.profile
        else:
            with self.store.read() as conn:
                profile = self.store.get_profile(conn, task.profile)
        if profile is None:
            raise Conflict(f'task profile "{task.profile}" no longer exists')
        ctx = ChainContext(
            history=tuple(s for s in history if s.kind not in _NOT_STEPS),
            candidate=candidate,
            ceiling=effective_profile(profile, task).ceiling,
            now=utcnow(),
        )
        for detector in self.rules.current.detectors:
            hit = detector.check(ctx)
            if hit is not None:
                return hit
        return None

    def _resolve(
        self, action: str | None, resource: str | None, prefetched: Prefetched | None = None
    ) -> dict[str, Any]:
        act = self.catalog().get(action) if action else None
        if prefetched is not None:
            res = prefetched.resource
        else:
            with self.store.read() as conn:
                res = self.store.get_resource(conn, resource) if resource else None
        return {
            "consequence": act.consequence.value if act else None,
            "sensitivity": res.sensitivity.value if res else None,
            "external": res.external if res else None,
        }

    # -- inline, before issuance -----------------------------------------------------------------
    def _candidate(
        self, decision: Decision, action: str, resource: str, prefetched: Prefetched | None = None
    ) -> ChainStep:
        return ChainStep(
            ref=decision.decision_id,
            kind=StepKind.CREDENTIAL_REQUEST,
            at=utcnow(),
            action=action,
            resource=resource,
            tier=decision.tier,
            outcome=decision.outcome,
            collection=bool(decision.inputs.get("approval_id")),
            **self._resolve(action, resource, prefetched),
        )

    def review_request(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action: str,
        resource: str,
        *,
        prefetched: Prefetched | None = None,
    ) -> tuple[Decision, Hit | None]:
        """The detectors for this request, before issuance — or, for an allowed decision whose mode
        ``chain.yaml`` checks after issuance (``detection.pre_issuance``), only marked so:
        :meth:`after_request` runs them once the credential is issued.

        ``prefetched``: the history, profile and resource the request flow read (under the task's
        lock, so nothing of the task changed since); without it they are read here."""
        post = decision.outcome is Outcome.ALLOW and not self.config.detection.before_issuance(decision.mode)
        history = prefetched.history if prefetched is not None else None
        if post:
            decision = replace(decision, detection=Detection.POST_ISSUANCE)
            if self.config.on_escalation is not OnEscalation.STEP_UP_ONLY:
                return decision, None
            # step_up_only: an escalated task's requests still need an approval before issuance
            return self._step_up_if_escalated(decision, history or self.history(task.task_id)), None
        decision = replace(decision, detection=Detection.PRE_ISSUANCE)
        if history is None:
            history = self.history(task.task_id)
        hit = self._detect(history, self._candidate(decision, action, resource, prefetched), task, prefetched)
        if hit is not None:
            return _denied_by(decision, hit), hit
        return self._step_up_if_escalated(decision, history), None

    def _step_up_if_escalated(self, decision: Decision, history: list[ChainStep]) -> Decision:
        escalated_before = any(s.kind is StepKind.ESCALATION for s in history)
        if (
            self.config.on_escalation is OnEscalation.STEP_UP_ONLY
            and escalated_before
            and decision.outcome is Outcome.ALLOW
            and not decision.inputs.get("approval_approved")
        ):
            return replace(
                decision,
                outcome=Outcome.STEP_UP,
                ttl_seconds=0,
                detection=Detection.PRE_ISSUANCE,
                reasons=(*decision.reasons, "the task's chain escalated earlier: every request needs step-up approval"),
            )
        return decision

    # -- right after issuance (detection: post_issuance) -----------------------------------------
    def after_request(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action: str,
        resource: str,
        *,
        prefetched: Prefetched | None = None,
    ) -> None:
        """Request-flow hook, after issuance (or its failure): a post-issuance decision's detectors
        run now, off the request's path, on the post-issuance pool. On a hit the task escalates:
        every grant it holds — the one just issued too — is revoked at its backend.

        ``prefetched``: what the request read under the task's lock (the history without this
        request, the profile, the resource). The check then judges exactly the inputs the
        pre-issuance check would have judged, and reads nothing; later requests of the task are
        judged by their own checks, which see this one. Without it the check reads them."""
        if decision.detection is not Detection.POST_ISSUANCE:
            return
        self._post.submit(self._check_after_issue, agent, task, decision, action, resource, prefetched)

    def _check_after_issue(
        self,
        agent: Agent,
        task: Task,
        decision: Decision,
        action: str,
        resource: str,
        prefetched: Prefetched | None = None,
    ) -> None:
        try:
            candidate = self._candidate(decision, action, resource, prefetched)
            if prefetched is not None:
                history = prefetched.history
            else:
                history = self.history(task.task_id, exclude=candidate.ref, at=candidate.at)
            hit = self._detect(history, candidate, task, prefetched)
        except Exception as exc:  # fail closed: a check that cannot run does not let the grants live
            log.exception("chain.post_issuance_check_failed", task_id=task.task_id)
            hit = Hit(
                detector=POST_ISSUANCE_CHECK_FAILED,
                steps=(),
                reason=f"the post-issuance chain check of decision {decision.decision_id} failed "
                f"({type(exc).__name__})",
            )
        if hit is None:
            return
        hit = replace(hit, extra={**hit.extra, "detection": Detection.POST_ISSUANCE.value})
        try:
            self.escalate(task.task_id, hit, actor=agent.name)
        except Exception:  # the outbox row, once written, is retried by the revocation worker
            log.exception("chain.post_issuance_escalation_failed", task_id=task.task_id, detector=hit.detector)

    def drain(self, timeout: float | None = None) -> None:
        """Wait for the post-issuance checks already submitted (tests, shutdown)."""
        self._post.drain(timeout)

    def close(self) -> None:
        """Finish the post-issuance checks in flight, then accept no more (container close)."""
        self._post.close()

    def escalate_request(self, agent: Agent, task: Task, decision: Decision, hit: Hit) -> Escalated:
        report = self.escalate(task.task_id, hit, actor=agent.name)
        return Escalated(
            f'the task\'s chain escalated (detector "{hit.detector}"): {hit.reason}; this request gets no '
            f"credential and every credential of the task is revoked",
            details={
                "decision": decision.public(),
                "detector": hit.detector,
                "rule": hit.rule,
                "task_state": report.task_state.value if report.task_state else None,
            },
        )

    def after_issue(
        self,
        grant_id: str,
        task_id: str,
        agent: str,
        fingerprints: Mapping[str, int],
        *,
        state: TaskState | None = None,
    ) -> None:
        """After a grant is committed: if the task stopped being active while we issued (another
        replica escalated it), revoke what it holds again, including what we just issued.

        ``state``: the task's state as the grant's own transaction read it
        (:meth:`Store.task_state_shared`); without it the task is read now."""
        if state is None:
            with self.store.read() as conn:
                task = self.store.get_task(conn, task_id)
            state = task.state if task is not None else None
        if state is not None and state is not TaskState.ACTIVE:
            log.warning("chain.issued_after_escalation", task_id=task_id, grant_id=grant_id)
            self.revocations.revoke_task(
                task_id,
                reason=f"issued while the task became {state.value}",
                state=state,
                actor="broker",
                audit_kind="task.revoked",
                from_states=(),
            )

    # -- escalation --------------------------------------------------------------------------------
    def escalate(self, task_id: str, hit: Hit, *, actor: str) -> Escalation:
        mode = self.config.on_escalation
        detail = {**hit.audit_data(), "reason": hit.reason, "mode": mode.value, "actor": actor}

        def mark(conn: Connection) -> None:
            chain_store.add_event(conn, task_id=task_id, kind=StepKind.ESCALATION, detail=detail)

        report = self.revocations.revoke_task(
            task_id,
            reason=f"{hit.detector}: {hit.reason}",
            state=TaskState.QUARANTINED,
            actor=actor,
            audit_kind="task.escalated",
            extra={**hit.audit_data(), "mode": mode.value},
            from_states=(TaskState.ACTIVE,) if mode is OnEscalation.QUARANTINE else (),
            in_transaction=mark,
        )
        with self.store.read() as conn:
            task = self.store.get_task(conn, task_id)
        state = task.state if task else None
        if self.on_escalated is not None:
            self.on_escalated(hit.detector)
        log.warning("task.escalated", task_id=task_id, detector=hit.detector, rule=hit.rule)
        if task is not None and task.parent_task_id is not None:
            self._report_to_parent(task.parent_task_id, task_id, hit, actor)
        if self.alerter is not None:
            self.alerter.send(
                {
                    "event": "task.escalated",
                    "task_id": task_id,
                    "agent": task.agent if task else None,
                    "task_state": state.value if state else None,
                    "at": utcnow().isoformat(),
                    **detail,
                    "revocations": {"queued": report.queued, "completed": report.completed, "pending": report.pending},
                }
            )
        return Escalation(
            task_id=task_id,
            task_state=state,
            detector=hit.detector,
            revocations_queued=report.queued,
            revocations_completed=report.completed,
            revocations_pending=report.pending,
        )

    def _report_to_parent(self, parent_id: str, child_id: str, hit: Hit, actor: str) -> None:
        """A delegated sub-task escalated: say so on the parent's chain; escalate the parent too
        when ``chain.yaml`` says ``delegation.escalate_parent`` (the default)."""
        with self.store.write() as conn:
            ref, at = chain_store.add_event(
                conn,
                task_id=parent_id,
                kind=StepKind.DELEGATE_ESCALATED,
                detail={"child_task_id": child_id, "detector": hit.detector},
            )
        with self.store.read() as conn:
            parent = self.store.get_task(conn, parent_id)
        if not self.config.delegation.escalate_parent or parent is None or parent.state is not TaskState.ACTIVE:
            return
        step = ChainStep(ref=ref, kind=StepKind.DELEGATE_ESCALATED, at=at)
        self.escalate(
            parent_id,
            Hit(
                detector=DELEGATE_ESCALATED,
                steps=(step,),
                reason=f"delegated task {child_id} escalated ({hit.detector})",
                extra={"child_task_id": child_id},
            ),
            actor=actor,
        )

    def admin_revoke(self, task_id: str, reason: str, actor: str) -> Escalation:
        return self.escalate(task_id, Hit(detector=ADMIN_REVOKE, reason=reason, steps=()), actor=actor)

    def escalate_task(self, task_id: str, *, detector: str, reason: str, actor: str, steps: list[str]) -> Escalation:
        """Escalate from outside the request flow (admin revoke, tampering), under the task's lock."""
        hit = Hit(detector=detector, reason=reason, steps=(), extra={"step_refs": steps} if steps else {})
        with self.lock(task_id):
            return self.escalate(task_id, hit, actor=actor)

    def report_leak_locked(self, task_id: str, grant_id: str, finding_summary: Mapping[str, Any]) -> Escalation | None:
        with self.lock(task_id):
            return self.report_leak(task_id, grant_id, finding_summary)

    def flag_review_locked(self, task_id: str, review_id: str, reason: str) -> Escalation | None:
        with self.lock(task_id):
            return self.flag_review(task_id, review_id, reason)

    def report_leak(self, task_id: str, grant_id: str, finding_summary: Mapping[str, Any]) -> Escalation | None:
        """A broker-issued secret was seen (scanner): revoke that grant now, then escalate (None:
        the ``leaked_secret`` detector is disabled — the leak is recorded and the grant revoked)."""
        with self.store.read() as conn:
            grant = self.store.get_grant(conn, grant_id)
        if grant is None or grant.task_id != task_id:
            raise NotFound(f'grant "{grant_id}" of task "{task_id}" does not exist')
        finding = {
            k: finding_summary[k]
            for k in FINDING_KEYS
            if k in finding_summary and isinstance(finding_summary[k], str | int)
        }
        with self.store.write() as conn:
            ref, at = chain_store.add_event(
                conn, task_id=task_id, kind=StepKind.LEAK, detail={"grant_id": grant_id, "finding": finding}
            )
        if grant.active:
            self.revocations.revoke_grant(grant, reason=f"{LEAKED_SECRET}: grant seen by the scanner", actor="scanner")
        step = ChainStep(ref=ref, kind=StepKind.LEAK, at=at, action=grant.action, resource=grant.resource)
        hit = Hit(
            detector=LEAKED_SECRET,
            steps=(step,),
            extra={"grant_id": grant_id, "finding": finding},
            reason=f"grant {grant_id} ({grant.action} on {grant.resource}) was seen in "
            f"{finding.get('source') or finding.get('location') or 'reported text'}",
        )
        if not self.config.detectors.leaked_secret.enabled:
            return None
        return self.escalate(task_id, hit, actor="scanner")

    def flag_review(
        self, task_id: str, review_id: str, reason: str = "post-action review flagged"
    ) -> Escalation | None:
        """A reviewer flagged an action: record it and escalate (None: ``review_flagged`` is disabled)."""
        with self.store.read() as conn:
            if self.store.get_task(conn, task_id) is None:
                raise NotFound(f'task "{task_id}" does not exist')
        with self.store.write() as conn:
            ref, at = chain_store.add_event(
                conn, task_id=task_id, kind=StepKind.REVIEW, detail={"review_id": review_id}
            )
        if not self.config.detectors.review_flagged.enabled:
            return None
        step = ChainStep(ref=ref, kind=StepKind.REVIEW, at=at)
        return self.escalate(
            task_id,
            Hit(
                detector=REVIEW_FLAGGED, steps=(step,), reason=f"{reason} ({review_id})", extra={"review_id": review_id}
            ),
            actor="review",
        )

    # -- events reported by the agent ---------------------------------------------------------------
    def record_event(
        self, agent: Agent, task: Task, kind: StepKind, text: str | None, action: str | None, resource: str | None
    ) -> RecordedEvent:
        if action is not None and action not in self.catalog():
            raise InvalidInput("action", f'"{action}" is not in the action catalog')
        facts = self._resolve(action, resource)
        if resource is not None and facts["sensitivity"] is None:
            raise InvalidInput("resource", f'"{resource}" is not a registered resource')
        length = len(text) if text is not None else None
        fp = self.fingerprint(text) if text else None
        with self.store.write() as conn:
            event_id, at = chain_store.add_event(
                conn,
                task_id=task.task_id,
                kind=kind,
                action=action,
                resource=resource,
                text_length=length,
                text_fingerprint=fp,
                detail=facts,
            )
            self.audit.append(
                conn,
                "chain.event",
                actor=agent.name,
                task_id=task.task_id,
                outcome=kind.value,
                data={
                    "event_id": event_id,
                    "kind": kind.value,
                    "action": action,
                    "resource": resource,
                    "text_length": length,
                    "text_fingerprint": fp,
                },
            )
        escalation = None
        if kind is StepKind.TOOL_CALL and action is not None:
            candidate = ChainStep(ref=event_id, kind=kind, at=at, action=action, resource=resource, **facts)
            history = self.history(task.task_id, exclude=event_id, at=at)
            hit = self._detect(history, candidate, task)
            if hit is not None:
                escalation = self.escalate(task.task_id, hit, actor=agent.name)
        return RecordedEvent(
            event_id=event_id,
            task_id=task.task_id,
            kind=kind,
            at=at,
            text_length=length,
            text_fingerprint=fp,
            escalation=escalation,
        )
