"""Incidents: a broker-issued secret seen where it should not be, a wrapped secret someone else
unwrapped. Both are answered the same way — audit, revoke, escalate the task through the chain,
and rotate the static secret behind it when the broker manages one.

Called by the live scanner (``/v1/scan``, events), the scheduled scans' findings and the agent's
unwrap-failure report. Everything it needs arrives in the constructor.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from broker.audit import AuditLog
from broker.backends.port import CredentialBackend, UnwrapJudge
from broker.chain.model import Escalation
from broker.errors import InvalidInput, NotFound
from broker.logging import get_logger
from broker.models import Agent, GrantState, LeakAction, TaskState
from broker.services.revocation import RevocationService
from broker.services.scanning import LeakOutcome
from broker.services.tasks import TaskService
from broker.store.repo import Store
from scanners.known import GrantMatch

log = get_logger("nhi-broker.incidents")


class RotationOutcome(Protocol):
    @property
    def outcome(self) -> str: ...


class ManagedSecrets(Protocol):
    """The static secrets the broker rotates (:class:`rotation.service.RotationService`)."""

    def match_fingerprint(self, fingerprint: str) -> str | None: ...

    def rotate(self, name: str, *, reason: str, actor: str) -> RotationOutcome: ...


class Escalator(Protocol):
    """The chain's entry points for incidents (:class:`broker.chain.service.ChainService`)."""

    def report_leak_locked(
        self, task_id: str, grant_id: str, finding_summary: Mapping[str, Any]
    ) -> Escalation | None: ...

    def escalate_task(
        self, task_id: str, *, detector: str, reason: str, actor: str, steps: list[str]
    ) -> Escalation: ...


@dataclass(frozen=True, slots=True)
class UnwrapReport:
    grant_id: str
    verdict: str
    escalation: Escalation | None
    rotated: tuple[str, ...] | None  # None: not tampered, nothing to rotate


class IncidentService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        tasks: TaskService,
        chain: Escalator,
        revocations: RevocationService,
        backends: Mapping[str, CredentialBackend],
        managed: ManagedSecrets,
    ) -> None:
        self.store = store
        self.audit = audit
        self.tasks = tasks
        self.chain = chain
        self.revocations = revocations
        # optional capability, checked once here: the backends that hand out wrapped secrets
        self.judges: dict[str, UnwrapJudge] = {k: b for k, b in backends.items() if isinstance(b, UnwrapJudge)}
        self.managed = managed

    def handle_leak(self, match: GrantMatch, fingerprint: str, source: str) -> LeakOutcome:
        """A broker-issued secret was seen in ``source``: an incident. While its grant is active, the
        grant is revoked and its task escalated (detector ``leaked_secret``) through the chain."""
        with self.store.read() as conn:
            grant = self.store.get_grant(conn, match.grant_id)
            task = self.store.get_task(conn, match.task_id)
        active = grant is not None and grant.active
        self.audit.record(
            "finding.leaked_grant",
            actor=source,
            task_id=match.task_id,
            outcome="escalating" if active else "already_inactive",
            data={"grant_id": match.grant_id, "agent": match.agent, "fingerprint": fingerprint, "source": source},
        )
        if not active:
            return LeakOutcome(LeakAction.NONE)
        if task is not None and task.state is TaskState.ACTIVE:
            report = self.chain.report_leak_locked(
                match.task_id, match.grant_id, {"source": source, "fingerprint": fingerprint}
            )
            if report is None:  # leaked_secret switched off: the grant alone was revoked
                return LeakOutcome(LeakAction.GRANT_REVOKED)
            return LeakOutcome(LeakAction.TASK_ESCALATED, report)
        assert grant is not None  # active implies found
        self.revocations.revoke_grant(grant, reason=f"leaked in {source}", actor="broker")
        return LeakOutcome(LeakAction.GRANT_REVOKED)

    def report_unwrap_failure(self, agent: Agent, task_id: str, grant_id: str) -> UnwrapReport:
        """The agent says unwrapping its wrapped secret failed. If nobody but the agent could have
        unwrapped it (not revoked, not expired, no longer pending), someone intercepted it: the
        credential was tampered with — audited and the task escalated (``unwrap_tampered``)."""
        task = self.tasks.task_for(agent, task_id)
        with self.store.read() as conn:
            grant = self.store.get_grant(conn, grant_id)
        if grant is None or grant.task_id != task.task_id:
            raise NotFound(f'grant "{grant_id}" of task "{task_id}" not found')
        judge = self.judges.get(grant.backend)
        if judge is None:
            raise InvalidInput("grant_id", f'grant "{grant_id}" is not a wrapped secret (backend {grant.backend})')
        verdict = str(
            judge.judge_unwrap_failure(
                grant.revocation, expires_at=grant.expires_at, revoked=grant.state is GrantState.REVOKED
            )
        )
        if verdict != "tampered":
            self.audit.record(
                "credential.unwrap_failed",
                actor=agent.name,
                task_id=task_id,
                outcome=verdict,
                data={"grant_id": grant_id, "backend": grant.backend},
            )
            return UnwrapReport(grant_id, verdict, None, None)
        self.audit.record(
            "credential.tampered",
            actor=agent.name,
            task_id=task_id,
            outcome="tampered",
            data={"grant_id": grant_id, "backend": grant.backend, "wrapping_accessor": grant.accessor},
        )
        escalation = None
        if task.state is TaskState.ACTIVE:
            escalation = self.chain.escalate_task(
                task_id,
                detector="unwrap_tampered",
                actor=agent.name,
                steps=[grant_id],
                reason=f"the wrapped secret of grant {grant_id} was unwrapped by someone else",
            )
        # the secret itself is now in unknown hands: rotate it when the broker manages it
        rotated = self._rotate_managed(
            grant.fingerprints, actor=agent.name, why=f"wrapped secret of grant {grant_id} intercepted"
        )
        return UnwrapReport(grant_id, verdict, escalation, rotated)

    def _rotate_managed(self, fingerprints: Sequence[str], *, actor: str, why: str) -> tuple[str, ...]:
        rotated: list[str] = []
        for name in dict.fromkeys(n for n in map(self.managed.match_fingerprint, fingerprints) if n):
            result = self.managed.rotate(name, reason="leak", actor=actor)
            log.warning("managed_secret.rotated_after_tampering", name=name, outcome=result.outcome, why=why)
            rotated.append(name)
        return tuple(rotated)
