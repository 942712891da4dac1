"""Structural checks that cut false positives: checksums and decodable payloads.

Each check takes the candidate secret (the whole token) and returns whether it is well formed.
A rule names its check with ``checksum:`` (or ``validate:``) in its YAML; the names are the keys
of :data:`CHECKS`.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Final

BASE62: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"


def base62_encode(number: int, width: int = 6) -> str:
    digits = []
    while number:
        number, rem = divmod(number, 62)
        digits.append(BASE62[rem])
    return "".join(reversed(digits)).rjust(width, "0")


def crc32_base62(payload: str) -> str:
    """GitHub/npm style checksum: CRC32 of the random part, base62, left-padded to 6."""
    return base62_encode(zlib.crc32(payload.encode()) & 0xFFFFFFFF)


def github_crc32(token: str) -> bool:
    """``ghp_``/``gho_``/``ghu_``/``ghs_``/``ghr_``/``npm_``: 30 random chars + 6-char CRC32 tail."""
    body = token.split("_", 1)[-1]
    if len(body) != 36:
        return False
    return crc32_base62(body[:30]) == body[30:]


def _b64decode(segment: str) -> bytes | None:
    padded = segment + "=" * (-len(segment) % 4)
    try:
        return base64.urlsafe_b64decode(padded.replace("+", "-").replace("/", "_"))
    except (binascii.Error, ValueError):
        return None


def jwt_structure(token: str) -> bool:
    """Header and payload are base64url JSON objects; the header names an ``alg``."""
    parts = token.split(".")
    if len(parts) != 3:
        return False
    header, payload = _b64decode(parts[0]), _b64decode(parts[1])
    if header is None or payload is None:
        return False
    try:
        h, p = json.loads(header), json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        return False
    return isinstance(h, dict) and "alg" in h and isinstance(p, dict)


def base64_64_bytes(token: str) -> bool:
    """Azure storage account keys: base64 of exactly 64 random bytes (88 chars, ``==``)."""
    raw = _b64decode(token.rstrip("="))
    return raw is not None and len(raw) == 64


def not_repetitive(token: str) -> bool:
    """Refuse runs like ``xxxx`` or ``0123456789``-style sequences that mark placeholders."""
    if re.search(r"(.)\1{5,}", token):
        return False
    lowered = token.lower()
    return not any(seq in lowered for seq in ("0123456789", "abcdefghij", "1234567890"))


# documentation's example credentials (SQLAlchemy's scott:tiger, curl's user:s3cr3t, ...)
WELL_KNOWN_EXAMPLES: Final = frozenset(
    {
        "tiger",
        "s3cr3t",
        "p@ssw0rd",
        "hunter2",
        "letmein",
        "admin",
        "root",
        "test",
        "guest",
        "user",
        "pass",
        "password",
        "passwd",
        "secret",
        "pass123",
        "secret123",
        "changeit",
        "changeme",
    }
)


def basic_credentials(token: str) -> bool:
    """HTTP Basic: base64 of ``user:password`` with a password that is not a documented example."""
    raw = _b64decode(token.rstrip("="))
    if raw is None:
        return False
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    _user, sep, password = text.strip().partition(":")
    return bool(sep) and len(password) >= 4 and password.lower() not in WELL_KNOWN_EXAMPLES


CHECKS: Final[dict[str, Callable[[str], bool]]] = {
    "github_crc32": github_crc32,
    "jwt": jwt_structure,
    "base64_64_bytes": base64_64_bytes,
    "not_repetitive": not_repetitive,
    "basic_credentials": basic_credentials,
}


def shannon_entropy(value: str) -> float:
    """Bits per character of ``value`` (Shannon)."""
    if not value:
        return 0.0
    n = len(value)
    return -sum(c / n * math.log2(c / n) for c in Counter(value).values())
