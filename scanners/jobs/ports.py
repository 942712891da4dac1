"""What a scheduled scan run needs from outside the scanner: the ports the broker implements.

The runner (:mod:`scanners.jobs.runner`) streams a job's source, scans each piece and commits the
findings with the source's incremental state. Where jobs, leases, state and findings are stored
(:class:`JobStore`) and what is done about a finding (:class:`FindingActions`: revoke a grant,
rotate a managed secret, alert) belong to the broker: ``broker/store/scan_jobs.py`` and
``broker/services/findings.py`` implement these protocols.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from scanners.jobs.spec import ScanJobSpec
from scanners.known import GrantMatch


class JobNotFound(LookupError):
    """No scan job of that name."""


class JobBusy(RuntimeError):
    """The job is running elsewhere (another replica or thread holds its lease)."""


@dataclass(frozen=True, slots=True)
class ManagedRef:
    name: str
    location: str  # "mount/path" of the managed secret's home (empty when not in KV)


@dataclass(frozen=True, slots=True)
class RawFinding:
    rule: str
    severity: str
    fingerprint: str
    location: str
    line: int | None
    excerpt: str
    meta: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Recorded:
    finding_id: str
    raw: RawFinding
    new: bool
    status: str


class RunStatus(enum.StrEnum):
    RUNNING = "running"
    OK = "ok"
    FAILED = "failed"


class Trigger(enum.StrEnum):
    SCHEDULE = "schedule"
    MANUAL = "manual"


@dataclass(frozen=True, slots=True)
class RunSummary:
    """What one run did: returned by a manual run and kept as the job's ``last_run``."""

    run_id: str
    status: RunStatus
    trigger: Trigger
    started_at: datetime
    duration_ms: float
    bytes: int
    findings: int
    new_findings: int
    error: str | None
    holder: str

    def to_json(self) -> dict[str, Any]:
        """The stored form (``scan_jobs.last_run``); the admin API shows the same object."""
        return {
            "run_id": self.run_id,
            "status": self.status.value,
            "trigger": self.trigger.value,
            "started_at": self.started_at.isoformat(),
            "duration_ms": self.duration_ms,
            "bytes": self.bytes,
            "findings": self.findings,
            "new_findings": self.new_findings,
            "error": self.error,
            "holder": self.holder,
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> RunSummary:
        return cls(
            run_id=raw["run_id"],
            status=RunStatus(raw["status"]),
            trigger=Trigger(raw["trigger"]),
            started_at=datetime.fromisoformat(raw["started_at"]),
            duration_ms=raw["duration_ms"],
            bytes=int(raw["bytes"]),
            findings=int(raw["findings"]),
            new_findings=int(raw["new_findings"]),
            error=raw["error"],
            holder=raw["holder"],
        )


@dataclass
class Matches:
    """Fingerprints the run acts on: grants the broker issued, static secrets it manages."""

    grants: Callable[[str], GrantMatch | None]
    managed: Mapping[str, ManagedRef]


class JobStore(Protocol):
    def get_spec(self, name: str) -> ScanJobSpec | None:
        """The job's spec, or None when there is no such job."""
        ...

    def all_specs(self) -> Mapping[str, ScanJobSpec]: ...

    def claim(self, job: str, holder: str, until: datetime, slot: int | None) -> bool: ...

    def renew(self, job: str, holder: str, until: datetime) -> bool: ...

    def release(self, job: str, holder: str) -> None: ...

    def start_run(self, job: str, holder: str, trigger: Trigger) -> tuple[str, datetime]: ...

    def finish_run(self, job: str, summary: RunSummary) -> None: ...

    def load_state(self, job: str) -> Mapping[str, Any]: ...

    def commit_checkpoint(
        self, name: str, source_kind: str, state: Mapping[str, Any | None], raws: Sequence[RawFinding]
    ) -> list[Recorded]:
        """Record ``raws`` (de-duplicated by fingerprint and location) and apply ``state`` in one
        transaction: a crash replays at most one chunk, never skips one."""
        ...


class FindingActions(Protocol):
    def managed_fingerprints(self) -> Mapping[str, ManagedRef]: ...

    def act(self, job: str, on_finding: Any, recorded: Sequence[Recorded], matches: Matches) -> None: ...


class SourcePolicy(Protocol):
    """Where a job's source may read (the broker's scan roots and outbound URL policy:
    ``broker/services/source_guard.py``). Checked again on every run: a stored job whose path left
    the roots, or whose host now resolves somewhere refused, fails its run without reading."""

    def before_run(self, source: Any) -> None:
        """Raise (with a message safe to show) to refuse the run."""
        ...

    def path_allowed(self, path: str) -> bool:
        """A local file the source found may be read (its real path is under a root, not refused)."""
        ...
