"""The audit key: the port the chain and the checkpoints are keyed with, and its local adapters.

The audit trail is keyed with HMAC-SHA256 under a key that is **not in the database**: whoever can
write the database but not read the key cannot rewrite an event, re-chain the trail or forge a
checkpoint. The port is "MAC these bytes", not "give me the key", so a KMS-style provider (an HSM,
OpenBao transit ``hmac``, AWS KMS ``GenerateMac``) fits behind it without the key ever leaving it.

Adapters here:

- :class:`LocalAuditKey` from a hex value in the settings / environment (``audit.key``,
  ``NHI_BROKER_AUDIT__KEY``), or
- from a file, by default ``<data_dir>/audit.key``, created ``0600`` on first start of the broker;
  refused when it is readable by group or others. Verification (``nhi-broker audit verify``) never
  creates a key: a missing key there is an error, not a new key.

Key material never prints: ``repr``/``str`` show the key id only (an HMAC of a fixed label, which
tells nothing about the key).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from typing import Protocol, runtime_checkable

from broker.errors import BrokerError

ALGORITHM = "hmac-sha256"
MIN_KEY_BYTES = 32


class AuditKeyError(BrokerError):
    """The audit key is missing, malformed, too open, or not the key the chain was keyed with."""


@runtime_checkable
class AuditKey(Protocol):
    """The port. ``key_id`` names the key (never reveals it); ``mac`` is HMAC-SHA256 under it."""

    @property
    def key_id(self) -> str: ...

    def mac(self, message: bytes) -> bytes: ...


class LocalAuditKey:
    """A key held in this process's memory (from a file or the settings)."""

    __slots__ = ("_key", "_key_id")

    def __init__(self, key: bytes) -> None:
        if len(key) < MIN_KEY_BYTES:
            raise AuditKeyError(f"audit key must be at least {MIN_KEY_BYTES} bytes (64 hex characters)")
        self._key = key
        self._key_id = "local:" + hmac.new(key, b"nhi-broker audit key id v1", hashlib.sha256).hexdigest()[:16]

    @property
    def key_id(self) -> str:
        return self._key_id

    def mac(self, message: bytes) -> bytes:
        return hmac.new(self._key, message, hashlib.sha256).digest()

    def __repr__(self) -> str:
        return f"LocalAuditKey(key_id={self._key_id!r})"

    __str__ = __repr__

    def __reduce__(self) -> str | tuple[object, ...]:  # pickling would write the key somewhere
        raise TypeError("audit keys cannot be pickled")


def parse_hex_key(value: str, *, source: str) -> LocalAuditKey:
    """``source`` names where the value came from (a setting or a file), never the value."""
    try:
        key = bytes.fromhex(value.strip())
    except ValueError:
        raise AuditKeyError(f"{source}: the audit key must be hex (64 characters or more)") from None
    if len(key) < MIN_KEY_BYTES:
        raise AuditKeyError(
            f"{source}: the audit key must be at least {MIN_KEY_BYTES} bytes ({MIN_KEY_BYTES * 2} hex characters)"
        )
    return LocalAuditKey(key)


def load_key_file(path: Path, *, create: bool) -> LocalAuditKey:
    """Read the key file; with ``create``, make it (``0600``, exclusive create) when absent."""
    if not path.exists():
        if not create:
            raise AuditKeyError(
                f"audit key file {path} does not exist (set audit.key_file, "
                f"NHI_BROKER_AUDIT__KEY, or point --data-dir at the broker's data dir)"
            )
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process made it first: read theirs
            return load_key_file(path, create=False)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        raise AuditKeyError(
            f"audit key file {path} has mode {mode:04o}: it must not be readable by group or others (chmod 600 {path})"
        )
    return parse_hex_key(path.read_text(), source=f"audit key file {path}")
