"""Secret scanning wired to the broker: every issued secret is known; a leak is an incident.

The engine (``scanners``) knows nothing of the broker. This service keeps the engine's
:class:`KnownSecretIndex` in step with issuance (fingerprints only, never the secret), scans text
off the event loop, and turns a broker-issued secret found anywhere into an audited incident:
its task is escalated (every grant revoked, task quarantined) through ``on_leak``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from broker.audit import AuditLog
from broker.chain.model import Escalation
from broker.logging import get_logger
from broker.models import LeakAction
from broker.store.repo import Store
from scanners.engine import Finding, Scanner, ScanResult, scan_text_async
from scanners.known import GrantMatch, KnownSecretIndex

log = get_logger("nhi-broker.scanning")


@dataclass(frozen=True, slots=True)
class LeakOutcome:
    """What answering a leaked grant did, and the escalation of its task when there was one."""

    action: LeakAction
    escalation: Escalation | None = None


LeakHandler = Callable[[GrantMatch, str, str], LeakOutcome]  # match, fingerprint, source -> what was done


@dataclass(frozen=True, slots=True)
class Leak:
    """A secret the broker issued, found in scanned text, and what the broker did about it."""

    grant_id: str
    task_id: str
    agent: str
    fingerprint: str
    outcome: LeakOutcome


@dataclass(frozen=True, slots=True)
class ScanOutcome:
    result: ScanResult
    leaks: tuple[Leak, ...]


class LiveScanner:
    """The live scanner of ``/v1/scan`` and agent events (scheduled scan jobs: ``ScanJobService``)."""

    def __init__(
        self, scanner: Scanner, known: KnownSecretIndex, store: Store, audit: AuditLog, *, on_leak: LeakHandler
    ) -> None:
        self.scanner = scanner
        self.known = known
        self.store = store
        self.audit = audit
        self.on_leak = on_leak

    def load_known(self) -> int:
        """Load the index from the store's active grants (at start-up; with several replicas the
        grant feed, :mod:`broker.services.grant_feed`, adds what the others issue)."""
        return add_active_grants(self.known, self.store)

    def on_issued(self, grant_id: str, task_id: str, agent: str, lengths: dict[str, int]) -> None:
        match = GrantMatch(grant_id, task_id, agent)
        for fp, length in lengths.items():
            self.known.add(fp, match, length=length)

    def scan_sync(self, text: str, *, source: str) -> ScanOutcome:
        result = self.scanner.scan_and_redact(text)
        return ScanOutcome(result, self._handle(result.findings, source))

    async def scan(self, text: str, *, source: str) -> ScanOutcome:
        result = await scan_text_async(self.scanner, text)
        leaks = (
            await asyncio.to_thread(self._handle, result.findings, source)
            if any(f.grant is not None for f in result.findings)
            else ()
        )
        return ScanOutcome(result, tuple(leaks))

    def _handle(self, findings: tuple[Finding, ...] | list[Finding], source: str) -> tuple[Leak, ...]:
        return tuple(
            Leak(
                grant_id=f.grant.grant_id,
                task_id=f.grant.task_id,
                agent=f.grant.agent,
                fingerprint=f.fingerprint,
                outcome=self.on_leak(f.grant, f.fingerprint, source),
            )
            for f in findings
            if f.grant is not None
        )


def add_active_grants(
    index: KnownSecretIndex,
    store: Store,
    *,
    skip: frozenset[str] = frozenset(),
    since: datetime | None = None,
    grant_id: str | None = None,
) -> int:
    """Add every active grant's fingerprints (with their secrets' lengths) from the store to
    ``index``, except fingerprints in ``skip`` (only grants issued since ``since``, or one grant,
    when given). Returns the number of grants read."""
    with store.read() as conn:
        rows = store.active_grant_fingerprints(conn, since=since, grant_id=grant_id)
    for row in rows:
        match = GrantMatch(row.grant_id, row.task_id, row.agent)
        for fp in row.fingerprints:
            if fp not in skip:
                index.add(fp, match, length=row.secret_lengths.get(fp))
    return len(rows)
