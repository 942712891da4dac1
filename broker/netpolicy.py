"""Outbound URL policy: where the broker itself may send requests.

A URL the broker calls on someone's behalf (an ``http_api`` upstream) must be ``http(s)``, carry
no user info, query or fragment, and name a loopback host — or a host the operator allow-listed
(``gateway.allowed_hosts``), which must then be reached over ``https``. Host names are compared
exactly (case-insensitive); no wildcard.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import urlsplit

from broker.errors import InvalidInput

LOOPBACK_NAMES = frozenset({"localhost"})


def is_loopback(host: str) -> bool:
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_outbound_url(field: str, url: object, allowed_hosts: Iterable[str] = ()) -> str:
    """Return ``url`` without a trailing slash, or raise ``InvalidInput`` naming ``field``."""
    if not isinstance(url, str) or not url or len(url) > 2048:
        raise InvalidInput(field, "must be an http(s) URL of at most 2048 characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(field, f'"{url}" is not a valid URL') from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(field, f'"{url}" must be an http:// or https:// URL with a host')
    if "@" in parts.netloc:
        raise InvalidInput(field, "must not carry user info (user:password@); credentials come from the broker")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise InvalidInput(field, f'"{url}" must not carry a query or fragment')
    if any(seg in (".", "..") for seg in parts.path.split("/")) or "%" in parts.path or "\\" in parts.path:
        raise InvalidInput(field, f'"{url}" must have a plain path (no dot segments, escapes or backslashes)')
    host = parts.hostname.lower()
    allowed = {h.strip().lower() for h in allowed_hosts if h.strip()}
    if is_loopback(host):
        pass
    elif host in allowed:
        if parts.scheme != "https":
            raise InvalidInput(field, f'"{url}": an allow-listed host must be reached over https')
    else:
        raise InvalidInput(field, f'host "{host}" is neither loopback nor in gateway.allowed_hosts {sorted(allowed)}')
    del port
    return url.rstrip("/")
