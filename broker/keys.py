"""The broker's keys, derived in one place.

``fingerprint_key(settings)``: the HMAC key of every fingerprint (grants, findings, scan state).
Configured (``fingerprint_key``, hex) or, for a single instance, a 0600 file in the data dir
created on first use. Replicas must share it: see ``docs/deploy.md``.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from broker.config import Settings


def load_or_create_key(path: Path) -> bytes:
    """A 32-byte key kept in a 0600 file (created on first use, never world-readable)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        # written whole to a private temp file, then linked into place: a concurrent reader never
        # sees a half-written key, and of two processes creating it at once the first one wins
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
        finally:
            tmp.unlink()
    return bytes.fromhex(path.read_text().strip())


def fingerprint_key(settings: Settings) -> bytes:
    raw = settings.fingerprint_key.get_secret_value()
    return bytes.fromhex(raw) if raw else load_or_create_key(settings.data_dir / "fingerprint.key")
