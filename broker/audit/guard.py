"""The audit guard: verification at start-up and on a schedule, signed checkpoints, alerts.

Started by the runner (``broker.runtime.start_workers``), never by building the container. It
ticks on a :class:`~broker.workers.PeriodicWorker`:

1. keys an unkeyed chain (the ``audit.chain_keyed`` anchor; a no-op once keyed);
2. walks the whole chain against every checkpoint the readable sinks hold (start-up);
3. every ``checkpoint_interval`` walks only the events appended since the last verified point and,
   when the head moved, exports a checkpoint of it, signed with the audit key, to every sink;
4. every ``verify_interval`` walks the whole chain again;
5. on stop, verifies the tail once more and exports a last checkpoint.

Only a verified head is ever signed. On a mismatch it stops exporting and alerts: a structured log
event ``audit.chain_broken`` (error), the metrics ``nhi_audit_chain_intact`` = 0 and
``nhi_audit_verify_failures_total``, and the alert webhook when one is configured.
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Sequence
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from broker.audit.checkpoints import Checkpoint, CheckpointFile, parse
from broker.audit.log import AuditLog
from broker.audit.sinks import CheckpointSink, ReadableSink, SinkError
from broker.audit.verify import VerifyResult
from broker.logging import get_logger
from broker.store.repo import utcnow
from broker.workers import PeriodicWorker

log = get_logger("nhi-broker.audit")


class AlertSender(Protocol):
    def send(self, payload: dict[str, Any]) -> None: ...


class AuditMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.intact = Gauge(
            "nhi_audit_chain_intact", "1 while the audit chain verifies, 0 after a mismatch", registry=registry
        )
        self.failures = Counter(
            "nhi_audit_verify_failures_total", "Audit verifications that found tampering", registry=registry
        )
        self.export_failures = Counter(
            "nhi_audit_checkpoint_export_failures_total", "Checkpoints a sink did not take", ["sink"], registry=registry
        )
        self.checkpoint_seq = Gauge(
            "nhi_audit_last_checkpoint_seq", "Event number of the last exported checkpoint", registry=registry
        )
        self.verified_at = Gauge(
            "nhi_audit_last_verified_timestamp_seconds", "When the chain last verified", registry=registry
        )


def replica_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class AuditGuard:
    def __init__(
        self,
        audit: AuditLog,
        sinks: Sequence[CheckpointSink],
        metrics: AuditMetrics,
        *,
        alert: AlertSender | None,
        checkpoint_interval: float,
        verify_interval: float,
        replica: str | None = None,
    ) -> None:
        self.audit = audit
        self.sinks = list(sinks)
        self.metrics = metrics
        self.alert = alert
        self.checkpoint_interval = checkpoint_interval
        self.verify_interval = verify_interval
        self.replica = replica or replica_name()
        self.last_result: VerifyResult | None = None
        self.last_exported: Checkpoint | None = None
        self._verified: tuple[int, str] | None = None  # a keyed (seq, hash) this guard verified
        self._chain: str | None = None
        self._alerted: str | None = None
        self._failing_sinks: set[str] = set()  # alerted once until the sink takes a checkpoint again
        self._lock = threading.Lock()  # one verification/export at a time (thread and stop())
        self._worker: PeriodicWorker | None = None
        self._since_full = 0.0
        self.first_run = threading.Event()  # set once the start-up verification has run

    # -- lifecycle (the runner's) --------------------------------------------------------------
    def start(self) -> AuditGuard:
        """Tick now (key the chain, walk it all), then every ``checkpoint_interval`` seconds."""
        self._worker = PeriodicWorker("audit-guard", self.checkpoint_interval, self.tick, first_tick_now=True).start()
        return self

    def stop(self) -> None:
        if self._worker is not None:
            self._worker.stop(timeout=30)
        try:
            self.run_incremental()  # a last checkpoint of everything written before the stop
        except Exception as exc:  # the shutdown goes on; the next start verifies everything
            log.error("audit.final_checkpoint_failed", error_type=type(exc).__name__)

    def tick(self) -> None:
        try:
            if not self.first_run.is_set():
                self.audit.anchor()
                self.run_full()
                return
            self._since_full += self.checkpoint_interval
            if self._since_full >= self.verify_interval:
                self._since_full = 0.0
                self.run_full()
            else:
                self.run_incremental()
        finally:
            self.first_run.set()

    @property
    def verified_point(self) -> tuple[int, str] | None:
        """The last keyed (seq, hash) this guard verified, to walk on from (None before its first
        successful run, and after a failed one)."""
        return self._verified

    # -- one run -------------------------------------------------------------------------------
    def read_checkpoints(self) -> CheckpointFile:
        checkpoints: list[Checkpoint] = []
        problems: list[str] = []
        notes: list[str] = []
        for sink in self.sinks:
            if isinstance(sink, ReadableSink):
                found = parse(sink.read_lines(), self.audit.key, source=sink.name)
                checkpoints += found.checkpoints
                problems += found.problems
                notes += found.notes
        return CheckpointFile(tuple(checkpoints), tuple(problems), tuple(notes))

    def run_full(self) -> VerifyResult:
        """Walk the whole chain against the exported checkpoints; export when it verifies."""
        with self._lock:
            found = self.read_checkpoints()
            for note in found.notes:
                log.warning("audit.checkpoint_note", note=note)
            if found.problems:
                head = self.audit.head()
                result = VerifyResult(False, 0, found.problems[0], None, head_seq=head.seq, head_hash=head.hash)
            else:
                result = self.audit.verify(found.checkpoints)
            return self._after(result, full=True)

    def run_incremental(self) -> VerifyResult:
        """Walk the events appended since the last verified point; export when the head moved."""
        with self._lock:
            start = self._verified
            if start is not None:
                return self._after(self.audit.verify(start=start), full=False)
        return self.run_full()

    def _after(self, result: VerifyResult, *, full: bool) -> VerifyResult:
        self.last_result = result
        if not result.ok:
            self._verified = None
            self._broken(result)
            return result
        self.metrics.intact.set(1)
        self.metrics.verified_at.set(utcnow().timestamp())
        if self._alerted is not None:
            log.warning("audit.chain_verifies_again", head_seq=result.head_seq)
            self._alerted = None
        if full:
            self._chain = result.chain_id
        if self._chain is not None:  # keyed: only a keyed head is checkpointed
            self._verified = (result.head_seq, result.head_hash)
            self._export()
        return result

    def _export(self) -> None:
        assert self._verified is not None and self._chain is not None
        seq, digest = self._verified
        if self.last_exported is not None and self.last_exported.seq >= seq:
            return
        cp = Checkpoint(
            chain=self._chain,
            seq=seq,
            hash=digest,
            ts=utcnow().isoformat(),
            key_id=self.audit.key.key_id,
            replica=self.replica,
        ).signed(self.audit.key)
        exported = False
        for sink in self.sinks:
            try:
                sink.export(cp)
                exported = True
                self._failing_sinks.discard(sink.name)
            except SinkError as exc:
                self.metrics.export_failures.labels(sink.name).inc()
                log.error("audit.checkpoint_export_failed", sink=sink.name, error=exc.message)
                if sink.name not in self._failing_sinks:
                    self._failing_sinks.add(sink.name)
                    self._send({"event": "audit.checkpoint_export_failed", "sink": sink.name, "error": exc.message})
        if exported:
            self.last_exported = cp
            self.metrics.checkpoint_seq.set(seq)

    def _broken(self, result: VerifyResult) -> None:
        self.metrics.intact.set(0)
        self.metrics.failures.inc()
        problem = result.problem or "unknown"
        log.error("audit.chain_broken", problem=problem, seq=result.seq, head_seq=result.head_seq, replica=self.replica)
        if self._alerted != problem:  # one webhook per distinct problem, not one per run
            self._alerted = problem
            self._send(
                {
                    "event": "audit.chain_broken",
                    "problem": problem,
                    "seq": result.seq,
                    "head_seq": result.head_seq,
                    "replica": self.replica,
                }
            )

    def _send(self, payload: dict[str, Any]) -> None:
        if self.alert is not None:
            self.alert.send(payload)
