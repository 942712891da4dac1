"""Generators of new secret values for ``kv_generated`` managed secrets.

A generator spec is a small JSON object validated once, at registration::

    {"format": "password", "length": 32}                 # letters, digits, punctuation; every class present
    {"format": "api_key", "prefix": "sk_live_", "length": 40}   # prefix + base62
    {"format": "hex", "length": 64}                      # lower-case hex characters
    {"format": "base64url", "length": 43}                # URL-safe base64 alphabet, no padding

Values come from :mod:`secrets` and are returned as :class:`broker.secrets.Secret`, so they print
as ``**********``. :func:`matches` checks a value against its spec (the verify step of the
``kv_generated`` playbook uses it).
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from broker.errors import InvalidInput
from broker.secrets import Secret

_PUNCT = "!#%+-.:=?@^_~"  # no quotes, backslash, $ or spaces: safe in DSNs, shells and YAML
_ALPHABETS: dict[str, str] = {
    "password": string.ascii_letters + string.digits + _PUNCT,
    "api_key": string.ascii_letters + string.digits,
    "hex": "0123456789abcdef",
    "base64url": string.ascii_letters + string.digits + "-_",
}
_LENGTH = {
    "password": (16, 128, 32),
    "api_key": (24, 128, 40),
    "hex": (32, 256, 64),
    "base64url": (32, 256, 43),
}
_PREFIX = re.compile(r"^[A-Za-z0-9_-]{0,32}$")


@dataclass(frozen=True, slots=True)
class GeneratorSpec:
    format: str
    length: int
    prefix: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"format": self.format, "length": self.length}
        if self.prefix:
            out["prefix"] = self.prefix
        return out


def parse_spec(value: Any, field: str = "settings.generator") -> GeneratorSpec:
    if value is None:
        value = {"format": "password"}
    if not isinstance(value, Mapping):
        raise InvalidInput(field, 'must be an object: {"format": "password"|"api_key"|"hex"|"base64url", ...}')
    unknown = set(value) - {"format", "length", "prefix"}
    if unknown:
        raise InvalidInput(f"{field}.{sorted(unknown)[0]}", "unknown key; allowed: format, length, prefix")
    fmt = value.get("format", "password")
    if fmt not in _ALPHABETS:
        raise InvalidInput(f"{field}.format", f'"{fmt}" is not one of {sorted(_ALPHABETS)}')
    low, high, default = _LENGTH[fmt]
    length = value.get("length", default)
    if not isinstance(length, int) or isinstance(length, bool) or not low <= length <= high:
        raise InvalidInput(f"{field}.length", f"must be an integer between {low} and {high} for {fmt}")
    prefix = value.get("prefix", "")
    if prefix and fmt != "api_key":
        raise InvalidInput(f"{field}.prefix", "is allowed only with format api_key")
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise InvalidInput(f"{field}.prefix", "must be at most 32 characters of A-Z a-z 0-9 _ -")
    return GeneratorSpec(format=fmt, length=length, prefix=prefix)


def generate(spec: GeneratorSpec) -> Secret:
    alphabet = _ALPHABETS[spec.format]
    while True:
        body = "".join(secrets.choice(alphabet) for _ in range(spec.length))
        if spec.format != "password" or _all_classes(body):
            return Secret(spec.prefix + body)


def matches(spec: GeneratorSpec, value: Secret) -> bool:
    raw = value.reveal()
    if not raw.startswith(spec.prefix):
        return False
    body = raw[len(spec.prefix) :]
    alphabet = set(_ALPHABETS[spec.format])
    return (
        len(body) == spec.length
        and all(ch in alphabet for ch in body)
        and (spec.format != "password" or _all_classes(body))
    )


def _all_classes(body: str) -> bool:
    return (
        any(c.islower() for c in body)
        and any(c.isupper() for c in body)
        and any(c.isdigit() for c in body)
        and any(c in _PUNCT for c in body)
    )
