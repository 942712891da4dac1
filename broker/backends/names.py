"""Validation of the names the adapters put into upstream URLs and requests.

An OpenBao mount, role or KV path becomes part of a request path, so it is checked before use:
no ``..``, no leading/trailing ``/``, no characters outside a conservative set.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from broker.errors import InvalidInput

_SEGMENT = re.compile(r"^[A-Za-z0-9_.@+=-]+$")


def vault_path(field: str, value: Any, *, what: str) -> str:
    """A slash-separated OpenBao path (mount or secret path)."""
    if not isinstance(value, str) or not value:
        raise InvalidInput(field, f"required: the {what} (a non-empty string)")
    parts = value.split("/")
    if any(p in ("", ".", "..") or not _SEGMENT.match(p) for p in parts):
        raise InvalidInput(
            field,
            f'invalid {what} "{value}": use letters, digits and _.@+=- separated '
            "by single slashes, without leading or trailing slash",
        )
    return value


def vault_name(field: str, value: Any, *, what: str) -> str:
    """A single path segment (a role name)."""
    name = vault_path(field, value, what=what)
    if "/" in name:
        raise InvalidInput(field, f'invalid {what} "{value}": must not contain "/"')
    return name


def section(settings: Mapping[str, Any], key: str, kind: str, example: str) -> Mapping[str, Any]:
    value = settings.get(key)
    if not isinstance(value, Mapping):
        raise InvalidInput(key, f"required for kind {kind}: {example}")
    return value


def refuse_unknown(section_name: str, value: Mapping[str, Any], allowed: set[str], kind: str) -> None:
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidInput(
            f"{section_name}.{unknown[0]}", f"unknown setting for kind {kind}; allowed: {sorted(allowed)}"
        )
