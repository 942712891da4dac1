"""The playbook port and the steps every rotation shares.

Every kind runs the same five steps, each audited by the service (``rotation.<step>``):

1. **create** — the playbook makes the new value in the system that checks it (a generated
   string, ``ALTER ROLE`` through OpenBao, a new IAM access key, ``rotate-root``);
2. **store** — the new value is written at once to a *staging* KV entry, so it is durable before
   anything depends on it (for kinds whose old value dies at ``create`` it is the only copy);
3. **verify** — the playbook proves the new value works (and, where it can, that the old one no
   longer does). A failed verify aborts: the consumers' KV entry is untouched, the playbook
   ``undo``-es what it can (e.g. deletes the new IAM key), and the old value stays in force;
4. **switch** — the new value becomes a new version of the consumers' KV entry (check-and-set on
   the version read before ``create``, so a concurrent writer is detected, not overwritten);
5. **retire** — after the overlap window (``retire_due``), or at once for a leak: the playbook
   retires the old value (deletes the old IAM key) and old KV versions are destroyed.

Playbooks never see the store or the audit log; they get a :class:`ManagedSecret` and return
non-secret detail for the audit record. Values travel as :class:`broker.secrets.Secret`.
"""

from __future__ import annotations

import contextlib
import enum
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from broker.errors import UpstreamError
from broker.secrets import Secret


class Kind(enum.StrEnum):
    KV_GENERATED = "kv_generated"
    POSTGRES_PASSWORD = "postgres_password"
    DATABASE_ROOT = "database_root"
    AWS_IAM_KEY = "aws_iam_key"


class SecretState(enum.StrEnum):
    PENDING = "pending"  # registered, never rotated by the broker
    ACTIVE = "active"
    ROTATING = "rotating"
    FAILED = "failed"  # the last rotation failed; the value before it is still in force


class Step(enum.StrEnum):
    CREATE = "created"
    STORE = "stored"
    VERIFY = "verified"
    SWITCH = "switched"
    RETIRE = "retired"


@dataclass(frozen=True, slots=True)
class ManagedSecret:
    name: str
    kind: Kind
    settings: Mapping[str, Any]
    kv_mount: str | None = None
    kv_path: str | None = None
    max_age_seconds: int | None = None
    overlap_seconds: int = 0
    state: SecretState = SecretState.PENDING
    fingerprints_current: tuple[str, ...] = ()
    fingerprints_previous: tuple[str, ...] = ()
    current_ref: Mapping[str, Any] = field(default_factory=dict)
    previous_ref: Mapping[str, Any] | None = None
    retire_at: datetime | None = None
    rotated_at: datetime | None = None
    next_attempt_at: datetime | None = None
    last_error: str | None = None


@dataclass(frozen=True, slots=True)
class NewValue:
    """What ``create`` made: secret fields (what consumers read from KV) and a public handle."""

    fields: Mapping[str, Secret]
    ref: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CurrentValue:
    """The consumers' KV entry as read before ``create``."""

    version: int
    fields: Mapping[str, Secret]


class VerifyFailed(UpstreamError):
    """The new value did not prove itself; the rotation is aborted (old value stays in force)."""

    code = "rotation_verify_failed"


class Playbook(Protocol):
    kind: Kind
    #: whether consumers read the value from KV (``database_root``: only OpenBao holds it)
    stores_in_kv: bool
    #: whether the old value stops working at ``create`` (one password per role): no overlap possible
    old_dies_at_create: bool
    #: KV fields that are not secret (a username): stored, never fingerprinted
    public_fields: frozenset[str]

    def validate(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Normalised settings, or :class:`broker.errors.InvalidInput` naming the field."""
        ...

    def create(self, secret: ManagedSecret) -> NewValue: ...

    def verify(self, secret: ManagedSecret, new: NewValue, old: CurrentValue | None) -> dict[str, Any]:
        """Prove ``new`` works (raise :class:`VerifyFailed`); return non-secret detail."""
        ...

    def undo(self, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
        """Withdraw ``new`` after a failed verify where the system allows it."""
        ...

    def retire(self, secret: ManagedSecret, previous_ref: Mapping[str, Any]) -> dict[str, Any]:
        """Retire the old value in its system (e.g. delete the old access key)."""
        ...

    def adopt_ref(self, old: CurrentValue) -> dict[str, Any]:
        """Non-secret handle of a value the broker did not create (the consumers' KV entry before
        the first rotation), so that retiring it works like retiring one the broker made."""
        ...


class ValueStore(Protocol):
    """Where values live (OpenBao KV v2): the only place a value is ever written."""

    def check_mount(self, mount: str) -> None: ...

    def read(self, mount: str, path: str) -> CurrentValue | None: ...

    def stage(self, mount: str, name: str, fields: Mapping[str, Secret]) -> str: ...

    def unstage(self, mount: str, name: str) -> None: ...

    def switch(self, mount: str, path: str, fields: Mapping[str, Secret], *, cas: int) -> int: ...

    def destroy_older(self, mount: str, path: str, keep_version: int) -> list[int]: ...


class StepFailed(Exception):
    """Raised by the common steps: which step failed, and the (safe) error behind it."""

    def __init__(self, step: str, error: Exception, detail: Mapping[str, Any] | None = None) -> None:
        super().__init__(step)
        self.step = step
        self.error = error
        self.detail = dict(detail or {})


class Fingerprint(Protocol):
    def __call__(self, value: str | Secret) -> str: ...


class Emit(Protocol):
    def __call__(self, step: Step, detail: Mapping[str, Any]) -> None: ...


@dataclass(frozen=True, slots=True)
class Switched:
    new: NewValue
    fingerprints: tuple[str, ...]
    kv_version: int | None
    old: CurrentValue | None


def run_steps(pb: Playbook, secret: ManagedSecret, kv: ValueStore, fingerprint: Fingerprint, emit: Emit) -> Switched:
    """create → store → verify → switch. Raises :class:`StepFailed` (old value kept in force)."""
    mount, path = secret.kv_mount or "", secret.kv_path or ""
    try:
        old = kv.read(mount, path) if pb.stores_in_kv else None
        new = pb.create(secret)
    except Exception as exc:
        raise StepFailed("create", exc) from exc
    fps = tuple(sorted({fingerprint(v) for k, v in new.fields.items() if k not in pb.public_fields}))
    emit(Step.CREATE, {"ref": dict(new.ref), "fingerprints": list(fps)})
    try:
        where = kv.stage(mount, secret.name, new.fields) if pb.stores_in_kv else "openbao (not readable)"
    except Exception as exc:
        raise StepFailed("store", exc, {"undo": _undo(pb, secret, new)}) from exc
    emit(Step.STORE, {"staged_at": where})
    try:
        detail = pb.verify(secret, new, old)
    except Exception as exc:
        undo = _undo(pb, secret, new)
        if pb.stores_in_kv and not pb.old_dies_at_create:
            _quietly(lambda: kv.unstage(mount, secret.name))
            undo["staging"] = "deleted"
        elif pb.stores_in_kv:
            undo["staging"] = f"kept at {where}: the old value stopped working at create"
        raise StepFailed("verify", exc, {"undo": undo}) from exc
    emit(Step.VERIFY, detail)
    version: int | None = None
    try:
        if pb.stores_in_kv:
            version = kv.switch(mount, path, new.fields, cas=old.version if old else 0)
            _quietly(lambda: kv.unstage(mount, secret.name))
    except Exception as exc:
        undo = {} if pb.old_dies_at_create else _undo(pb, secret, new)
        raise StepFailed("switch", exc, {"undo": undo}) from exc
    emit(
        Step.SWITCH,
        {"kv_mount": mount, "kv_path": path, "kv_version": version} if pb.stores_in_kv else {"consumer": "openbao"},
    )
    return Switched(new=new, fingerprints=fps, kv_version=version, old=old)


def _undo(pb: Playbook, secret: ManagedSecret, new: NewValue) -> dict[str, Any]:
    try:
        return pb.undo(secret, new)
    except Exception as exc:  # reported in the audit record of the failure
        return {"undo_failed": type(exc).__name__}


def _quietly(fn: Any) -> None:
    # staging cleanup is best effort: the entry holds no consumer's value and stays inside OpenBao
    with contextlib.suppress(Exception):
        fn()
