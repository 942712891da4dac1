"""Findings of scheduled scans: stored once per (fingerprint, location), and acted on.

A finding holds the rule, the keyed fingerprint, where it was (location, line, commit...) and a
redacted excerpt; never the secret. Status: ``open``, ``resolved``, ``false_positive``,
``revoked``, ``rotated``; ``first_seen``/``last_seen`` and an occurrence count.

Actions, decided by fingerprint after the finding is committed (so a crash never loses one):

- a credential the broker issued → its grant is revoked and its task escalated (``on_leak``:
  the chain's ``leaked_secret`` path) → ``revoked``;
- a static secret the broker manages → rotated through :class:`ManagedSecretMatcher` → ``rotated``;
- anything else → stays ``open``; ``finding.opened`` is audited and the alert webhook is called.

An action that fails leaves the finding ``open`` with the error, audits it and alerts.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from broker.audit import AuditLog
from broker.errors import InvalidInput, NotFound
from broker.logging import get_logger
from broker.models import FindingStatus
from broker.services.scanning import LeakHandler
from broker.store import findings as findings_db
from broker.store.findings import StoredFinding
from broker.store.repo import Store, utcnow
from scanners.jobs.ports import ManagedRef, Matches, Recorded
from scanners.known import GrantMatch

log = get_logger("nhi-broker.findings")


HUMAN_STATUSES = (FindingStatus.OPEN, FindingStatus.RESOLVED, FindingStatus.FALSE_POSITIVE)


class ManagedSecretMatcher(Protocol):
    """The rotation side's registry of static secrets the broker manages."""

    def fingerprints(self) -> Mapping[str, ManagedRef]: ...  # fingerprint of a current value -> secret

    def rotate(self, name: str, *, reason: str, actor: str) -> Mapping[str, Any]: ...


class NoManagedSecrets:
    def fingerprints(self) -> Mapping[str, ManagedRef]:
        return {}

    def rotate(self, name: str, *, reason: str, actor: str) -> Mapping[str, Any]:
        raise NotFound(f'managed secret "{name}" does not exist')


Alert = Callable[[dict[str, Any]], None]


class FindingsService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        on_leak: LeakHandler,
        managed: ManagedSecretMatcher,
        alert: Alert | None = None,
    ) -> None:
        self.store = store
        self.audit = audit
        self.on_leak = on_leak
        self.managed = managed
        self.alert = alert

    def managed_fingerprints(self) -> Mapping[str, ManagedRef]:
        return self.managed.fingerprints()

    # -- acting (after the commit) -------------------------------------------------------------------
    def act(self, job: str, on_finding: Any, recorded: Sequence[Recorded], matches: Matches) -> None:
        for rec in recorded:
            fp = rec.raw.fingerprint
            grant = matches.grants(fp)
            managed = matches.managed.get(fp)
            if rec.status != FindingStatus.OPEN.value:
                continue
            try:
                if grant is not None and on_finding.broker_issued == "revoke":
                    done = self.on_leak(grant, fp, f"scan:{job}:{rec.raw.location}")
                    escalated = {"escalation": done.escalation.to_json()} if done.escalation else {}
                    self._set(
                        rec.finding_id,
                        FindingStatus.REVOKED,
                        {
                            "action": {
                                "kind": "revoke",
                                "action": done.action.value,
                                **escalated,
                                "grant_id": grant.grant_id,
                                "task_id": grant.task_id,
                            }
                        },
                    )
                elif managed is not None and on_finding.managed == "rotate":
                    outcome = dict(
                        self.managed.rotate(
                            managed.name,
                            reason=f"found by scan job {job} at {rec.raw.location}",
                            actor=f"scan:{job}",
                        )
                    )
                    self._set(
                        rec.finding_id,
                        FindingStatus.ROTATED,
                        {"action": {"kind": "rotate", "managed": managed.name, **_safe(outcome)}},
                    )
                elif rec.new:
                    self._opened(job, rec, grant, managed, alert=on_finding.alert)
                    continue
                if rec.new:
                    self._audit_opened(job, rec, grant, managed)
            except Exception as exc:  # an action that fails leaves the finding open and alerts
                error = getattr(exc, "message", None) or type(exc).__name__
                log.error("finding.action_failed", job=job, finding_id=rec.finding_id, error=str(error)[:200])
                self._set(rec.finding_id, FindingStatus.OPEN, {"action_error": str(error)[:300]})
                self._opened(job, rec, grant, managed, error=str(error)[:300], alert=True)  # always

    def _opened(
        self,
        job: str,
        rec: Recorded,
        grant: GrantMatch | None,
        managed: ManagedRef | None,
        error: str | None = None,
        *,
        alert: bool,
    ) -> None:
        self._audit_opened(job, rec, grant, managed, error)
        if alert and self.alert is not None:
            self.alert(
                {
                    "event": "finding.opened",
                    "finding_id": rec.finding_id,
                    "job": job,
                    "rule": rec.raw.rule,
                    "severity": rec.raw.severity,
                    "fingerprint": rec.raw.fingerprint,
                    "location": rec.raw.location,
                    "line": rec.raw.line,
                    "excerpt": rec.raw.excerpt,
                    "at": utcnow().isoformat(),
                    **({"action_error": error} if error else {}),
                }
            )

    def _audit_opened(
        self,
        job: str,
        rec: Recorded,
        grant: GrantMatch | None,
        managed: ManagedRef | None,
        error: str | None = None,
    ) -> None:
        self.audit.record(
            "finding.opened",
            actor=f"scan:{job}",
            task_id=grant.task_id if grant else None,
            outcome="action_failed" if error else None,
            data={
                "finding_id": rec.finding_id,
                "rule": rec.raw.rule,
                "location": rec.raw.location,
                "line": rec.raw.line,
                "fingerprint": rec.raw.fingerprint,
                "grant_id": grant.grant_id if grant else None,
                "managed": managed.name if managed else None,
                **{k: v for k, v in rec.raw.meta.items() if k in ("commit", "path", "key")},
            },
        )

    def _set(self, finding_id: str, status: FindingStatus, extra: Mapping[str, Any]) -> None:
        with self.store.write() as conn:
            findings_db.set_status(conn, finding_id, status, extra)

    # -- reading and triage ------------------------------------------------------------------------
    def list(
        self,
        *,
        status: str | None = None,
        job: str | None = None,
        rule: str | None = None,
        source: str | None = None,
        fingerprint: str | None = None,
        since: datetime | None = None,
        before: tuple[datetime, str] | None = None,
        limit: int = 100,
    ) -> list[StoredFinding]:
        with self.store.read() as conn:
            return findings_db.list_findings(
                conn,
                status=status,
                job=job,
                rule=rule,
                source=source,
                fingerprint=fingerprint,
                since=since,
                before=before,
                limit=limit,
            )

    def get(self, finding_id: str) -> StoredFinding:
        with self.store.read() as conn:
            finding = findings_db.get_finding(conn, finding_id)
        if finding is None:
            raise NotFound(f'finding "{finding_id}" does not exist')
        return finding

    def set_status(self, finding_id: str, status: str, *, actor: str, note: str = "") -> StoredFinding:
        if status not in {s.value for s in HUMAN_STATUSES}:
            raise InvalidInput("status", f'"{status}" is not allowed: one of open, resolved, false_positive')
        before = self.get(finding_id)
        self._set(
            finding_id,
            FindingStatus(status),
            {"triage": {"by": actor, "note": note[:500], "at": utcnow().isoformat()}},
        )
        self.audit.record(
            "finding.status_changed",
            actor=actor,
            data={"finding_id": finding_id, "from": before.status.value, "to": status, "note": note[:500]},
        )
        return self.get(finding_id)


def _safe(outcome: Mapping[str, Any]) -> dict[str, Any]:
    """What of a rotation outcome may be stored: plain, non-secret scalars."""
    return {
        k: v
        for k, v in outcome.items()
        if isinstance(v, str | int | bool | None)
        and not any(s in k.lower() for s in ("secret", "password", "token", "value"))
    }
