"""Baselines: known findings to suppress, by (path, rule, fingerprint) — never the secret.

Two formats are read and written:

* the broker's own (``{"version": 1, "salt": ..., "findings": [{path, rule, fingerprint, line}]}``),
  keyed HMAC fingerprints;
* detect-secrets' ``.secrets.baseline`` (``{"version": "1.5.0", "plugins_used": [...],
  "results": {path: [{type, filename, hashed_secret, is_verified, line_number}]}}``), so a team's
  audited baseline carries over: a finding is suppressed when its file and the SHA-1 of its
  secret are in the baseline (detect-secrets' own identity; its type names differ from ours).
  SHA-1 of a short secret can be brute-forced from the file — that is detect-secrets' format;
  prefer the broker's own format for new baselines.

Fingerprints are keyed HMACs. The key is ``NHI_BROKER_FINGERPRINT_KEY`` when set (the same for
every machine that shares the baseline); otherwise the baseline carries its own random salt, so
fingerprints are not rainbow-table-able (unlike detect-secrets' unsalted SHA-1) but anyone holding
the file could still test guesses of short secrets — set the environment key for real use.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanners.engine import Finding

VERSION = 1


class BaselineError(ValueError):
    pass


DETECT_SECRETS_VERSION = "1.5.0"

# the secret's text for a finding (the CLI reads it back from the file); None when unknown
SecretOf = Callable[[Finding], "str | None"]


@dataclass(frozen=True, slots=True)
class Baseline:
    salt: str | None
    entries: frozenset[tuple[str, str, str]]
    sha1_by_path: frozenset[tuple[str, str]] = field(default_factory=frozenset)  # detect-secrets
    format: str = "nhi-broker"
    root: Path | None = None  # detect-secrets file names are relative to the baseline's directory

    def suppresses(self, f: Finding, secret_of: SecretOf | None = None) -> bool:
        if (f.path or "", f.rule_id, f.fingerprint) in self.entries:
            return True
        if self.sha1_by_path and secret_of is not None:
            secret = secret_of(f)
            if secret is not None:
                digest = hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest()
                return (_norm(f.path or "", self.root), digest) in self.sha1_by_path
        return False


def _norm(path: str, root: Path | None = None) -> str:
    if root is not None and path:
        try:
            return Path(path).resolve().relative_to(root.resolve()).as_posix()
        except (ValueError, OSError):
            pass
    return path[2:] if path.startswith("./") else path


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
    """Either format; detect-secrets' is recognised by its ``results`` mapping."""
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BaselineError(f"baseline {path}: cannot read ({exc.__class__.__name__})") from exc
    if isinstance(doc, dict) and isinstance(doc.get("results"), dict):
        return _load_detect_secrets(path, doc)
    if not isinstance(doc, dict) or doc.get("version") != VERSION or not isinstance(doc.get("findings"), list):
        raise BaselineError(f"baseline {path}: expected {{'version': {VERSION}, 'findings': [...]}}")
    entries = set()
    for i, e in enumerate(doc["findings"]):
        if not isinstance(e, dict) or not all(isinstance(e.get(k), str) for k in ("path", "rule", "fingerprint")):
            raise BaselineError(f"baseline {path}: findings[{i}] needs string path, rule, fingerprint")
        entries.add((e["path"], e["rule"], e["fingerprint"]))
    salt = doc.get("salt")
    return Baseline(salt if isinstance(salt, str) else None, frozenset(entries))


def _load_detect_secrets(path: Path, doc: dict[str, Any]) -> Baseline:
    pairs = set()
    for fname, items in doc["results"].items():
        if not isinstance(fname, str) or not isinstance(items, list):
            raise BaselineError(f"baseline {path}: results must map file names to lists")
        for i, e in enumerate(items):
            if not isinstance(e, dict) or not isinstance(e.get("hashed_secret"), str):
                raise BaselineError(f"baseline {path}: results[{fname!r}][{i}] needs a string hashed_secret")
            pairs.add((_norm(fname), e["hashed_secret"]))
    return Baseline(None, frozenset(), frozenset(pairs), "detect-secrets", path.parent)


def write_detect_secrets(path: Path, findings: Iterable[Finding], secret_of: SecretOf) -> None:
    """A detect-secrets 1.5 baseline (``results`` keyed by file relative to the baseline's
    directory; SHA-1 of each secret)."""
    results: dict[str, list[dict[str, Any]]] = {}
    seen = set()
    for f in sorted(findings, key=lambda f: (f.path or "", f.line)):
        secret = secret_of(f)
        if secret is None:
            continue
        fname = _norm(f.path or "", path.parent)
        digest = hashlib.sha1(secret.encode(), usedforsecurity=False).hexdigest()
        if (fname, digest) in seen:
            continue
        seen.add((fname, digest))
        results.setdefault(fname, []).append(
            {
                "type": f.description,
                "filename": fname,
                "hashed_secret": digest,
                "is_verified": False,
                "line_number": f.line,
            }
        )
    doc = {
        "version": DETECT_SECRETS_VERSION,
        "plugins_used": [],
        "filters_used": [],
        "results": results,
        "generated_at": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


def write(path: Path, findings: Iterable[Finding], salt: str | None) -> None:
    items = sorted({(f.path or "", f.rule_id, f.fingerprint, f.line) for f in findings})
    doc = {
        "version": VERSION,
        "salt": salt,
        "findings": [{"path": p, "rule": r, "fingerprint": fp, "line": ln} for p, r, fp, ln in items],
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")
