"""Run one scan job: claim its lease, stream its source, commit findings with the state.

1. Claim the job's lease (and, for a scheduled run, its slot) — another replica or a run still
   going means this one does not start (``Skipped``).
2. Snapshot the job's incremental state; build the matches for this run: grants the broker issued
   that are active now (``KnownSecretIndex``) and current values of managed static secrets.
3. Stream the source: each piece is scanned (rules + known secrets + managed secrets); findings
   are buffered until the next checkpoint, then written together with the state it carries in one
   transaction; then acted on (revoke / rotate / alert).
4. Record the run (status, duration, bytes, findings) on the job; release the lease.

A heartbeat renews the lease while the run goes on; a replica that dies leaves a lease that
expires after ``lease_seconds``.
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from scanners.engine import Scanner
from scanners.jobs.ports import (
    FindingActions,
    JobBusy,
    JobNotFound,
    JobStore,
    Matches,
    RawFinding,
    Recorded,
    RunStatus,
    RunSummary,
    SourcePolicy,
    Trigger,
)
from scanners.jobs.spec import ScanJobSpec
from scanners.kingfisher import KingfisherEngine
from scanners.known import GrantMatch, KnownSecretIndex
from scanners.sources import build_source
from scanners.sources.base import Checkpoint, DictState, KvReader, Observation, Piece, SourceContext

log = structlog.get_logger("nhi-broker.scans")
MANAGED_RULE = "managed-static-secret"


@dataclass(frozen=True, slots=True)
class Skipped:
    reason: str


@dataclass(frozen=True, slots=True)
class SourceEnv:
    """What sources may reach beyond the job's own spec."""

    cache_dir: Path  # private per-job caches (git mirrors)
    policy: SourcePolicy  # scan roots and outbound URLs (checked before each run, and per file)
    aws_region: str | None = None
    aws_endpoint_url: str | None = None
    kv: Callable[[], AbstractContextManager[KvReader]] | None = None


def _now() -> datetime:
    return datetime.now(UTC)


class ScanRunner:
    def __init__(
        self,
        scans: JobStore,
        findings: FindingActions,
        key: bytes,
        env: SourceEnv,
        *,
        holder: str,
        grants_index: Callable[[], KnownSecretIndex],
        lease_seconds: float = 60.0,
        engine: KingfisherEngine | None = None,
    ) -> None:
        self.scans = scans
        self.findings = findings
        self.key = key
        self.env = env
        self.holder = holder
        self.lease_seconds = lease_seconds
        self.scanner = Scanner(key=key, engine=engine)  # the live scanner's engine: one compile per process
        self._grants_index = grants_index

    def _fp(self, value: str) -> str:
        return self.scanner.fingerprint(value)

    # -- one run -------------------------------------------------------------------------------------
    def run(self, name: str, *, trigger: Trigger = Trigger.MANUAL, slot: int | None = None) -> RunSummary | Skipped:
        spec = self.scans.get_spec(name)
        if spec is None:
            raise JobNotFound(name)
        if trigger is Trigger.SCHEDULE and not spec.enabled:
            return Skipped("disabled")
        if not self.scans.claim(name, self.holder, _now() + timedelta(seconds=self.lease_seconds), slot):
            return Skipped("running elsewhere or slot taken")
        stop = threading.Event()
        beat = threading.Thread(target=self._heartbeat, args=(name, stop), name=f"nhi-scan-lease-{name}", daemon=True)
        beat.start()
        try:
            return self._run_claimed(name, spec, trigger)
        finally:
            stop.set()
            beat.join(timeout=5)
            self.scans.release(name, self.holder)

    def run_now(self, name: str) -> RunSummary:
        result = self.run(name, trigger=Trigger.MANUAL)
        if isinstance(result, Skipped):
            raise JobBusy(name)
        return result

    def _heartbeat(self, name: str, stop: threading.Event) -> None:
        while not stop.wait(self.lease_seconds / 3):
            try:
                self.scans.renew(name, self.holder, _now() + timedelta(seconds=self.lease_seconds))
            except Exception as exc:  # the run goes on; the next beat retries
                log.warning("scan.lease_renew_failed", job=name, error_type=type(exc).__name__)

    def _run_claimed(self, name: str, spec: ScanJobSpec, trigger: Trigger) -> RunSummary:
        run_id, started = self.scans.start_run(name, self.holder, trigger)
        t0 = time.perf_counter()
        totals = {"bytes": 0, "findings": 0, "new_findings": 0}
        status, error = RunStatus.OK, None
        try:
            self._stream(name, spec, totals)
        except Exception as exc:  # one job failing never stops the others; the run records why
            status = RunStatus.FAILED
            error = getattr(exc, "message", None) or str(exc) or type(exc).__name__
            error = f"{type(exc).__name__}: {error}"[:500]
            log.error("scan.run_failed", job=name, run_id=run_id, error=error)
        summary = RunSummary(
            run_id=run_id,
            status=status,
            trigger=trigger,
            started_at=started,
            duration_ms=round((time.perf_counter() - t0) * 1000, 1),
            bytes=totals["bytes"],
            findings=totals["findings"],
            new_findings=totals["new_findings"],
            error=error,
            holder=self.holder,
        )
        self.scans.finish_run(name, summary)
        log.info(
            "scan.run",
            job=name,
            run_id=run_id,
            status=status.value,
            bytes=totals["bytes"],
            findings=totals["findings"],
            new=totals["new_findings"],
            duration_ms=summary.duration_ms,
        )
        return summary

    def _stream(self, name: str, spec: ScanJobSpec, totals: dict[str, int]) -> None:
        grants = self._grants_index()
        managed = dict(self.findings.managed_fingerprints())
        managed_index = KnownSecretIndex(self.key)
        for fp in managed:
            managed_index.add(fp, GrantMatch("managed", "", ""))
        matches = Matches(grants=grants.lookup, managed=managed)
        self.env.policy.before_run(spec.source)  # refused: the run fails with the reason, nothing is read
        ctx = SourceContext(
            job=name,
            fingerprint=self._fp,
            cache_dir=self.env.cache_dir,
            aws_region=self.env.aws_region,
            aws_endpoint_url=self.env.aws_endpoint_url,
            kv=self.env.kv,
            is_managed=lambda fp: (
                {"name": managed[fp].name, "location": managed[fp].location} if fp in managed else None
            ),
            is_grant=lambda fp: grants.lookup(fp) is not None,
            path_allowed=self.env.policy.path_allowed,
        )
        source = build_source(spec.source, ctx)
        scanner = copy.copy(self.scanner)  # shares the compiled rules; this run's index of grants
        scanner.known = grants
        buffered: list[RawFinding] = []
        for item in source.items(DictState(self.scans.load_state(name))):
            if isinstance(item, Piece):
                totals["bytes"] += item.nbytes
                buffered.extend(self._scan_piece(scanner, managed_index, managed, item))
            elif isinstance(item, Observation):
                buffered.append(
                    RawFinding(
                        item.rule,
                        item.severity,
                        item.fingerprint,
                        item.location,
                        None,
                        item.excerpt,
                        dict(item.meta),
                    )
                )
            elif isinstance(item, Checkpoint):
                totals["bytes"] += item.nbytes
                self._commit(name, spec, item.state, buffered, totals, matches)
                buffered = []
        if buffered:
            self._commit(name, spec, {}, buffered, totals, matches)

    def _commit(
        self,
        name: str,
        spec: ScanJobSpec,
        state: Any,
        raws: list[RawFinding],
        totals: dict[str, int],
        matches: Matches,
    ) -> None:
        recorded: list[Recorded] = self.scans.commit_checkpoint(name, spec.source.kind, state, raws)
        totals["findings"] += len(recorded)
        totals["new_findings"] += sum(1 for r in recorded if r.new)
        if recorded:
            self.findings.act(name, spec.on_finding, recorded, matches)

    def _scan_piece(
        self, scanner: Scanner, managed_index: KnownSecretIndex, managed: dict[str, Any], piece: Piece
    ) -> list[RawFinding]:
        out: list[RawFinding] = []
        found = scanner.scan(piece.text)
        for f in found:
            rule = f.rule_id if f.fingerprint not in managed else MANAGED_RULE
            out.append(
                RawFinding(
                    rule,
                    f.severity.value,
                    f.fingerprint,
                    piece.location,
                    piece.line_of(f.line),
                    f.excerpt,
                    dict(piece.meta),
                )
            )
        if managed:
            spans = [(f.start, f.end) for f in found]
            for s, e, fp, _ in managed_index.find(piece.text):
                if (s, e) in spans:
                    continue
                line = piece.text.count("\n", 0, s) + 1
                out.append(
                    RawFinding(
                        MANAGED_RULE,
                        "critical",
                        fp,
                        piece.location,
                        piece.line_of(line),
                        _excerpt(piece.text, s, e, f"[MANAGED-SECRET:{managed[fp].name}]", found),
                        dict(piece.meta),
                    )
                )
        return out


def _excerpt(text: str, start: int, end: int, label: str, others: Any) -> str:
    """The line around ``[start, end)`` with that span and every other finding on it masked."""
    ls = text.rfind("\n", 0, start) + 1
    le = text.find("\n", end)
    le = len(text) if le < 0 else le
    spans = sorted(
        [(start, end, label)]
        + [
            (f.start, f.end, f"[REDACTED:{f.rule_id}]")
            for f in others
            if f.start < le and f.end > ls and (f.start, f.end) != (start, end)
        ]
    )
    parts, pos = [], ls
    for s, e, lab in spans:
        if s < pos:
            continue
        parts += [text[pos:s], lab]
        pos = e
    parts.append(text[pos:le])
    line = "".join(parts).strip()
    return line if len(line) <= 200 else line[:200] + "…"
