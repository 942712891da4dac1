"""The active policy bundle, reloaded atomically; a bad new bundle is refused, the old one stays.

The core keeps one :class:`PolicyHolder`. Start-up calls :meth:`PolicyHolder.load` (a bad bundle
raises :class:`~broker.policy.problems.BundleError` naming file and line, so start-up fails).
``POST /v1/admin/policies/reload`` calls :meth:`reload`; a watcher thread calls :meth:`poll`.
Both return a :class:`ReloadResult` whose :meth:`~ReloadResult.audit_event` the core appends to
the audit log (``policy.reloaded`` or ``policy.reload_refused``).

Swapping is one reference assignment under a lock that only serialises reloads; ``decide`` reads
the reference once, so a request is decided entirely by one bundle.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.decisions import Decision, DecisionInput
from broker.models import Action
from broker.policy.bundle import content_hash
from broker.policy.engine import CedarDecisionEngine
from broker.policy.loader import check_bundle, load_bundle
from broker.policy.problems import Problem
from broker.workers import PeriodicWorker


@dataclass(frozen=True, slots=True)
class ReloadResult:
    ok: bool  # the candidate bundle is valid (and now active)
    changed: bool  # the active bundle hash changed
    trigger: str  # api | watch | ...
    directory: str
    previous_hash: str
    active_hash: str  # in force after the call (= previous_hash when refused)
    candidate_hash: str | None  # the bundle that was tried (None: directory unreadable)
    problems: tuple[Problem, ...] = ()

    @property
    def audit_kind(self) -> str:
        if not self.ok:
            return "policy.reload_refused"
        return "policy.reloaded" if self.changed else "policy.reload_unchanged"

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "changed": self.changed,
            "trigger": self.trigger,
            "directory": self.directory,
            "previous_hash": self.previous_hash,
            "active_hash": self.active_hash,
            "candidate_hash": self.candidate_hash,
            "problems": [p.to_dict() for p in self.problems],
        }

    def audit_event(self) -> dict[str, Any]:
        """``{"kind": ..., "data": {...}}`` for the audit log."""
        return {"kind": self.audit_kind, "data": self.to_dict()}


class PolicyHolder:
    """Holds the active :class:`CedarDecisionEngine`; satisfies ``DecisionEngine`` by delegation."""

    def __init__(self, engine: CedarDecisionEngine, directory: Path) -> None:
        self._engine = engine
        self.directory = Path(directory)
        self._lock = threading.Lock()
        self._last_refused: str | None = None
        # the active bundle's hash (an attribute, as the DecisionEngine port asks; updated on reload)
        self.bundle_hash: str = engine.bundle_hash

    @classmethod
    def load(cls, directory: Path) -> PolicyHolder:
        """Start-up: raise ``BundleError`` (file, line, message) when the bundle is bad."""
        return cls(CedarDecisionEngine(load_bundle(Path(directory))), Path(directory))

    # -- reads (lock-free) -------------------------------------------------------------------------
    def engine(self) -> CedarDecisionEngine:
        return self._engine

    def catalog(self) -> Mapping[str, Action]:
        return self._engine.bundle.catalog

    def decide(self, request: DecisionInput) -> Decision:
        return self._engine.decide(request)

    def info(self) -> dict[str, Any]:
        """What ``GET /v1/admin/policies`` returns."""
        bundle = self._engine.bundle
        return {
            "bundle_hash": bundle.bundle_hash,
            "directory": str(self.directory),
            "loaded_at": bundle.loaded_at.isoformat(),
            "files": list(bundle.files),
            "policies": sorted(bundle.policies),
        }

    # -- reloads ------------------------------------------------------------------------------------
    def reload(self, trigger: str = "api") -> ReloadResult:
        with self._lock:
            previous = self._engine.bundle_hash
            try:
                candidate_hash: str | None = content_hash(self.directory)
            except OSError:
                candidate_hash = None
            try:
                bundle, problems = check_bundle(self.directory)
            except Exception as exc:  # an unexpected loader failure refuses the bundle too
                bundle, problems = (
                    None,
                    [
                        Problem(
                            str(self.directory),
                            None,
                            f"bundle could not be loaded ({type(exc).__name__}: {exc})",
                        )
                    ],
                )
            if bundle is None:
                self._last_refused = candidate_hash
                return ReloadResult(
                    ok=False,
                    changed=False,
                    trigger=trigger,
                    directory=str(self.directory),
                    previous_hash=previous,
                    active_hash=previous,
                    candidate_hash=candidate_hash,
                    problems=tuple(problems) or (Problem(str(self.directory), None, "refused"),),
                )
            self._last_refused = None
            changed = bundle.bundle_hash != previous
            if changed:
                self._engine = CedarDecisionEngine(bundle)
                self.bundle_hash = bundle.bundle_hash
            return ReloadResult(
                ok=True,
                changed=changed,
                trigger=trigger,
                directory=str(self.directory),
                previous_hash=previous,
                active_hash=self._engine.bundle_hash,
                candidate_hash=bundle.bundle_hash,
            )

    def poll(self) -> ReloadResult | None:
        """Reload when the directory's content hash differs from the active bundle's.
        A refused bundle is reported once, not on every poll, until its content changes again."""
        try:
            current = content_hash(self.directory)
        except OSError:
            current = None
        if current == self._engine.bundle_hash or (current is not None and current == self._last_refused):
            return None
        return self.reload(trigger="watch")

    def watch(self, interval_seconds: float, on_result: Callable[[ReloadResult], None]) -> PeriodicWorker:
        """Start a worker that polls every ``interval_seconds`` and reports each reload."""

        def tick() -> None:
            result = self.poll()
            if result is not None:
                on_result(result)

        return PeriodicWorker("policy-watcher", interval_seconds, tick).start()
