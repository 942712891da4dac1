"""RotationService: the registry of managed static secrets and the runs of their playbooks.

- ``put``/``get``/``list``/``delete`` — the registry (admin API, ``managed_secrets`` table);
- ``rotate(name, reason=, actor=)`` — one run: create → store → verify → switch (see
  :mod:`rotation.playbooks.base`), each step an audit event ``rotation.<step>``, then either
  ``rotation.retired`` at once or a retirement scheduled after the overlap window;
  a failure is ``rotation.failed`` (step, safe message, what was undone) and the old value stays;
- ``rotate_due(now)`` — the max-age schedule; ``retire_due(now)`` — expired overlap windows;
- ``match_fingerprint(fp)`` — which managed secret a leaked value is (current or still-overlapping).

**Leak rule.** ``reason="leak"`` retires the old value at once (no overlap window): a leaked secret
must not stay valid for consumers' convenience. Kinds whose old value dies at create
(``postgres_password``, ``database_root``) and ``overlap_seconds = 0`` retire at once too. A
retirement still pending when a new rotation starts is completed first (cause ``superseded``).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from broker.audit import AuditLog
from broker.backends.names import vault_path
from broker.errors import BrokerError, Conflict, InvalidInput, NotFound
from broker.logging import get_logger
from broker.secrets import Fingerprinter
from broker.store.repo import Store, utcnow
from rotation import records
from rotation.playbooks.base import (
    Kind,
    ManagedSecret,
    Playbook,
    SecretState,
    Step,
    StepFailed,
    ValueStore,
    run_steps,
)

log = get_logger("nhi-broker.rotation")
LEAK = "leak"
MAX_AGE_SECONDS = 10 * 365 * 86400
MAX_OVERLAP_SECONDS = 30 * 86400


@dataclass(frozen=True, slots=True)
class RotationResult:
    name: str
    kind: str
    outcome: str  # rotated | failed
    reason: str
    rotation_id: str
    steps: tuple[str, ...] = ()
    fingerprints: tuple[str, ...] = ()
    kv_version: int | None = None
    retired: bool = False
    retire_at: datetime | None = None
    failed_step: str | None = None
    error: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.outcome == "rotated"

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "outcome": self.outcome,
            "reason": self.reason,
            "rotation_id": self.rotation_id,
            "steps": list(self.steps),
            "fingerprints": list(self.fingerprints),
            "kv_version": self.kv_version,
            "retired": self.retired,
            "retire_at": self.retire_at.isoformat() if self.retire_at else None,
            "failed_step": self.failed_step,
            "error": self.error,
        }


class RotationService:
    def __init__(
        self,
        store: Store,
        audit: AuditLog,
        fingerprint: Fingerprinter,
        kv: ValueStore,
        playbooks: Mapping[Kind, Playbook],
        *,
        retry_seconds: int = 300,
        stale_seconds: int = 900,
    ) -> None:
        self.store, self.audit, self.fingerprint, self.kv = store, audit, fingerprint, kv
        self.playbooks = dict(playbooks)
        self.retry_seconds, self.stale_seconds = retry_seconds, stale_seconds
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    # -- registry ---------------------------------------------------------------------------------
    def put(
        self,
        name: str,
        kind: str,
        settings: Mapping[str, Any],
        *,
        kv_mount: str | None = None,
        kv_path: str | None = None,
        max_age_seconds: int | None = None,
        overlap_seconds: int = 0,
        actor: str,
    ) -> tuple[ManagedSecret, bool]:
        try:
            k = Kind(kind)
        except ValueError as exc:
            raise InvalidInput("kind", f'"{kind}" is not one of {[x.value for x in Kind]}') from exc
        pb = self._playbook(k)
        if pb.stores_in_kv:
            kv_mount = vault_path("kv.mount", kv_mount, what="KV mount")
            kv_path = vault_path("kv.path", kv_path, what="KV path")
            self.kv.check_mount(kv_mount)
        elif kv_mount or kv_path:
            raise InvalidInput("kv", f"must be empty for kind {k.value}: OpenBao keeps the value itself")
        if max_age_seconds is not None and not 60 <= max_age_seconds <= MAX_AGE_SECONDS:
            raise InvalidInput(
                "max_age_seconds", f"must be from 60 to {MAX_AGE_SECONDS} (10 years), or null: no scheduled rotation"
            )
        if not 0 <= overlap_seconds <= MAX_OVERLAP_SECONDS:
            raise InvalidInput("overlap_seconds", f"must be from 0 to {MAX_OVERLAP_SECONDS} (30 days)")
        secret = ManagedSecret(
            name=name,
            kind=k,
            settings=pb.validate(settings),
            kv_mount=kv_mount,
            kv_path=kv_path,
            max_age_seconds=max_age_seconds,
            overlap_seconds=overlap_seconds,
        )
        with self.store.write() as conn:
            created = records.put(conn, secret)
            self.audit.append(
                conn,
                "admin.changed",
                actor=actor,
                outcome="created" if created else "replaced",
                data={
                    "entity": "managed_secret",
                    "name": name,
                    "kind": k.value,
                    "kv_mount": kv_mount,
                    "kv_path": kv_path,
                },
            )
        return self.get(name), created

    def get(self, name: str) -> ManagedSecret:
        with self.store.read() as conn:
            secret = records.get(conn, name)
        if secret is None:
            raise NotFound(f'managed secret "{name}" does not exist')
        return secret

    def all(self) -> list[ManagedSecret]:
        with self.store.read() as conn:
            return records.all_secrets(conn)

    def delete(self, name: str, *, actor: str) -> None:
        """Stop managing ``name`` (the value in KV and in its system stays as it is)."""
        with self.store.write() as conn:
            if not records.remove(conn, name):
                raise NotFound(f'managed secret "{name}" does not exist')
            self.audit.append(
                conn,
                "admin.changed",
                actor=actor,
                outcome="deleted",
                data={"entity": "managed_secret", "name": name},
            )

    def match_fingerprint(self, fingerprint: str) -> str | None:
        for s in self.all():
            if fingerprint in s.fingerprints_current or fingerprint in s.fingerprints_previous:
                return s.name
        return None

    # -- runs -------------------------------------------------------------------------------------
    def rotate(self, name: str, *, reason: str, actor: str) -> RotationResult:
        with self._lock(name):
            now = utcnow()
            with self.store.write() as conn:
                secret = records.claim(conn, name, now - timedelta(seconds=self.stale_seconds))
                if secret is None:
                    if records.get(conn, name) is None:
                        raise NotFound(f'managed secret "{name}" does not exist')
                    raise Conflict(f'managed secret "{name}" is being rotated')
            try:
                return self._run(secret, reason=reason, actor=actor)
            except BaseException:
                with self.store.write() as conn:  # never leave it claimed; the old value is in force
                    records.update_fields(
                        conn,
                        name,
                        state=SecretState.FAILED,
                        last_error="unexpected error",
                        next_attempt_at=utcnow() + timedelta(seconds=self.retry_seconds),
                    )
                raise

    def _run(self, secret: ManagedSecret, *, reason: str, actor: str) -> RotationResult:
        pb = self._playbook(secret.kind)
        rid = "rot_" + uuid.uuid4().hex[:16]
        steps: list[str] = []
        base = {"name": secret.name, "kind": secret.kind.value, "rotation_id": rid, "reason": reason}

        def emit(step: Step, detail: Mapping[str, Any]) -> None:
            steps.append(step.value)
            self.audit.record(f"rotation.{step.value}", actor=actor, outcome="ok", data={**base, **detail})

        self.audit.record(
            "rotation.started", actor=actor, outcome="ok", data={**base, "previous_state": secret.state.value}
        )
        if secret.retire_at is not None and secret.previous_ref is not None:
            self._retire(secret, actor=actor, cause="superseded", rotation_id=rid)
            secret = self.get(secret.name)
        try:
            switched = run_steps(pb, secret, self.kv, self.fingerprint, emit)
        except StepFailed as failure:
            return self._failed(secret, failure, steps, base, actor)
        now = utcnow()
        # nothing to retire when there was no value before (a first rotation onto an empty KV entry)
        has_previous = switched.old is not None or bool(secret.current_ref) or not pb.stores_in_kv
        immediate = has_previous and (reason == LEAK or pb.old_dies_at_create or secret.overlap_seconds == 0)
        retire_at = None
        if has_previous:
            retire_at = now if immediate else now + timedelta(seconds=secret.overlap_seconds)
        previous_ref = {
            **dict(secret.current_ref),
            "kv_version": switched.old.version if switched.old else None,
        }
        previous_fps = list(secret.fingerprints_current)
        if switched.old is not None and not secret.current_ref:  # first rotation: adopt what consumers had
            previous_ref.update(pb.adopt_ref(switched.old))
            previous_fps = sorted(
                {self.fingerprint(v) for k, v in switched.old.fields.items() if k not in pb.public_fields}
            )
        with self.store.write() as conn:
            records.update_fields(
                conn,
                secret.name,
                state=SecretState.ACTIVE,
                rotated_at=now,
                next_attempt_at=None,
                last_error=None,
                fingerprints_current=list(switched.fingerprints),
                fingerprints_previous=previous_fps,
                current_ref={**dict(switched.new.ref), "kv_version": switched.kv_version},
                previous_ref=previous_ref if has_previous else None,
                retire_at=retire_at,
            )
        retired = False
        if immediate:
            retired = self._retire(
                self.get(secret.name),
                actor=actor,
                cause=reason if reason == LEAK else "no overlap",
                rotation_id=rid,
            )
            if retired:
                steps.append(Step.RETIRE.value)
        log.info("rotation.done", name=secret.name, kind=secret.kind.value, rotation_id=rid, retired=retired)
        return RotationResult(
            name=secret.name,
            kind=secret.kind.value,
            outcome="rotated",
            reason=reason,
            rotation_id=rid,
            steps=tuple(steps),
            fingerprints=switched.fingerprints,
            kv_version=switched.kv_version,
            retired=retired,
            retire_at=None if retired else retire_at,
        )

    def _failed(
        self,
        secret: ManagedSecret,
        failure: StepFailed,
        steps: list[str],
        base: Mapping[str, Any],
        actor: str,
    ) -> RotationResult:
        err = failure.error
        message = err.message if isinstance(err, BrokerError) else f"unexpected {type(err).__name__}"
        with self.store.write() as conn:
            records.update_fields(
                conn,
                secret.name,
                state=SecretState.FAILED,
                last_error=f"{failure.step}: {message}",
                next_attempt_at=utcnow() + timedelta(seconds=self.retry_seconds),
            )
            self.audit.append(
                conn,
                "rotation.failed",
                actor=actor,
                outcome="failed",
                data={
                    **base,
                    "step": failure.step,
                    "error": message,
                    **failure.detail,
                    "old_value": "in force (consumers' KV entry unchanged)",
                },
            )
        log.warning("rotation.failed", name=secret.name, step=failure.step, error=message)
        return RotationResult(
            name=secret.name,
            kind=secret.kind.value,
            outcome="failed",
            reason=str(base["reason"]),
            rotation_id=str(base["rotation_id"]),
            steps=tuple(steps),
            failed_step=failure.step,
            error=message,
            detail=failure.detail,
        )

    def _retire(self, secret: ManagedSecret, *, actor: str, cause: str, rotation_id: str | None = None) -> bool:
        pb, ref = self._playbook(secret.kind), dict(secret.previous_ref or {})
        data: dict[str, Any] = {
            "name": secret.name,
            "kind": secret.kind.value,
            "rotation_id": rotation_id,
            "cause": cause,
        }
        try:
            detail = pb.retire(secret, ref)
            destroyed: list[int] = []
            current_version = secret.current_ref.get("kv_version")
            if pb.stores_in_kv and isinstance(current_version, int):
                destroyed = self.kv.destroy_older(secret.kv_mount or "", secret.kv_path or "", current_version)
        except BrokerError as exc:
            with self.store.write() as conn:
                records.update_fields(
                    conn,
                    secret.name,
                    last_error=f"retire: {exc.message}",
                    retire_at=utcnow() + timedelta(seconds=min(self.retry_seconds, 60)),
                )
                self.audit.append(
                    conn,
                    "rotation.failed",
                    actor=actor,
                    outcome="failed",
                    data={**data, "step": "retire", "error": exc.message},
                )
            return False
        with self.store.write() as conn:
            records.update_fields(conn, secret.name, previous_ref=None, retire_at=None, fingerprints_previous=[])
            self.audit.append(
                conn,
                "rotation.retired",
                actor=actor,
                outcome="ok",
                data={**data, **detail, "kv_versions_destroyed": destroyed},
            )
        return True

    def rotate_due(self, now: datetime | None = None) -> list[RotationResult]:
        with self.store.read() as conn:
            due = records.due_for_rotation(conn, now or utcnow())
        results = []
        for s in due:
            try:
                results.append(self.rotate(s.name, reason="max_age", actor="broker"))
            except (Conflict, NotFound):  # another replica took it, or it was deleted meanwhile
                continue
        return results

    def retire_due(self, now: datetime | None = None) -> int:
        with self.store.read() as conn:
            names = records.due_for_retirement(conn, now or utcnow())
        retired = 0
        for name in names:
            with self._lock(name):
                secret = self.get(name)
                if secret.retire_at is not None and secret.retire_at <= (now or utcnow()):
                    retired += self._retire(secret, actor="broker", cause="overlap window ended")
        return retired

    # -- helpers ----------------------------------------------------------------------------------
    def _playbook(self, kind: Kind) -> Playbook:
        pb = self.playbooks.get(kind)
        if pb is None:
            raise InvalidInput("kind", f'kind "{kind.value}" is not enabled on this broker')
        return pb

    def _lock(self, name: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(name, threading.Lock())
