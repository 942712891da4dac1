"""Baselines: known findings to suppress, by (path, rule, fingerprint) — never the secret.

Fingerprints are keyed HMACs. The key is ``NHI_BROKER_FINGERPRINT_KEY`` when set (the same for
every machine that shares the baseline); otherwise the baseline carries its own random salt, so
fingerprints are not rainbow-table-able (unlike detect-secrets' unsalted SHA-1) but anyone holding
the file could still test guesses of short secrets — set the environment key for real use.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from scanners.engine import Finding

VERSION = 1


class BaselineError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Baseline:
    salt: str | None
    entries: frozenset[tuple[str, str, str]]

    def suppresses(self, f: Finding) -> bool:
        return (f.path or "", f.rule_id, f.fingerprint) in self.entries


def fingerprint_key(baseline: Baseline | None) -> tuple[bytes, str | None]:
    """The key to fingerprint with, and the salt to record (None when the env key is used)."""
    env = os.environ.get("NHI_BROKER_FINGERPRINT_KEY")
    if env:
        try:
            key = bytes.fromhex(env)
        except ValueError:
            raise BaselineError("NHI_BROKER_FINGERPRINT_KEY must be hex") from None
        if len(key) < 32:
            raise BaselineError("NHI_BROKER_FINGERPRINT_KEY must be at least 32 bytes (64 hex)")
        return key, None
    salt = baseline.salt if baseline and baseline.salt else secrets.token_hex(32)
    return bytes.fromhex(salt), salt


def load(path: Path) -> Baseline:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline {path}: cannot read ({exc.__class__.__name__})") from exc
    if (
        not isinstance(doc, dict)
        or doc.get("version") != VERSION
        or not isinstance(doc.get("findings"), list)
    ):
        raise BaselineError(f"baseline {path}: expected {{'version': {VERSION}, 'findings': [...]}}")
    entries = set()
    for i, e in enumerate(doc["findings"]):
        if not isinstance(e, dict) or not all(
            isinstance(e.get(k), str) for k in ("path", "rule", "fingerprint")
        ):
            raise BaselineError(f"baseline {path}: findings[{i}] needs string path, rule, fingerprint")
        entries.add((e["path"], e["rule"], e["fingerprint"]))
    salt = doc.get("salt")
    return Baseline(salt if isinstance(salt, str) else None, frozenset(entries))


def write(path: Path, findings: Iterable[Finding], salt: str | None) -> None:
    items = sorted({(f.path or "", f.rule_id, f.fingerprint, f.line) for f in findings})
    doc = {
        "version": VERSION,
        "salt": salt,
        "findings": [{"path": p, "rule": r, "fingerprint": fp, "line": ln} for p, r, fp, ln in items],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
