"""The rotation side's registry of managed static secrets, as the findings of scheduled scans see it
(:class:`broker.services.findings.ManagedSecretMatcher`): fingerprints of current values (and of
previous ones still inside an overlap window), and ``rotate(name)`` — a leak retires the old value
at once, no overlap."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.errors import BrokerError
from rotation.service import LEAK, RotationService
from scanners.jobs.ports import ManagedRef


class RotationManagedSecrets:
    def __init__(self, service: RotationService) -> None:
        self.service = service

    def fingerprints(self) -> Mapping[str, ManagedRef]:
        out: dict[str, ManagedRef] = {}
        for s in self.service.all():
            home = f"{s.kv_mount}/{s.kv_path}" if s.kv_mount and s.kv_path else ""
            for fp in (*s.fingerprints_previous, *s.fingerprints_current):
                out[fp] = ManagedRef(s.name, home)
        return out

    def rotate(self, name: str, *, reason: str, actor: str) -> Mapping[str, Any]:
        result = self.service.rotate(name, reason=LEAK, actor=actor)
        if not result.ok:
            raise BrokerError(f'rotation of "{name}" failed at {result.failed_step}: {result.error}')
        return {
            "rotation_id": result.rotation_id,
            "outcome": result.outcome,
            "retired": result.retired,
            "kv_version": result.kv_version,
            "why": reason[:200],
        }
