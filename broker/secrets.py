"""Secret values that cannot print, and keyed fingerprints that refer to them.

A :class:`Secret` hides itself in ``repr``/``str``/f-strings/JSON; the value comes out only
through :meth:`Secret.reveal` at the point of use. A secret is referred to everywhere else by
its fingerprint: HMAC-SHA256 under the broker's fingerprint key, truncated to 128 bits, hex.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _stdlib_secrets
from typing import Any, Final

MASK: Final = "**********"


class Secret:
    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Secret wraps a str")
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __format__(self, spec: str) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        return hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash(("Secret", hashlib.sha256(self._value.encode()).digest()))

    def __bool__(self) -> bool:
        return bool(self._value)

    def __reduce__(self) -> Any:  # pickling would write the value somewhere
        raise TypeError("Secret values cannot be pickled")


class Fingerprinter:
    """Keyed fingerprints (HMAC-SHA256, 32 hex chars) of secret material."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if len(key) < 32:
            raise ValueError("fingerprint key must be at least 32 bytes")
        self._key = key

    def __call__(self, value: str | Secret) -> str:
        raw = value.reveal() if isinstance(value, Secret) else value
        return hmac.new(self._key, raw.encode(), hashlib.sha256).hexdigest()[:32]

    def __repr__(self) -> str:
        return "Fingerprinter(key=**********)"


def constant_time_equals(a: str | Secret, b: str | Secret) -> bool:
    av = a.reveal() if isinstance(a, Secret) else a
    bv = b.reveal() if isinstance(b, Secret) else b
    return hmac.compare_digest(av.encode(), bv.encode())


def new_token(prefix: str = "", nbytes: int = 32) -> Secret:
    return Secret(prefix + _stdlib_secrets.token_urlsafe(nbytes))
