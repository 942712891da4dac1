"""The one check every outbound URL goes through (SSRF guard).

An admin-defined URL (an S3 ``endpoint_url``, the IAM endpoint of a managed secret, a git source,
the alert and approval webhooks, an issuer's JWKS URL) makes the broker connect somewhere with
its own network position. :class:`OutboundPolicy` decides where it may go:

- scheme: ``https`` only (a git source may also use ``ssh``); plain ``http`` only to a loopback
  host, and only when loopback is allowed (``outbound.allow_loopback``: dev mode, tests);
- no userinfo: ``https://ghp_...@host`` or ``user:secret@host`` is refused, never stored (an ssh
  URL may name a plain user such as ``git@``: ssh authenticates with keys, not the URL);
- never link-local or cloud metadata (169.254.0.0/16, fe80::/10, fd00:ec2::254, and their
  IPv4-mapped forms), multicast or unspecified addresses; loopback only when allowed; private,
  shared and reserved ranges only when a configured network (``outbound.allow_networks``)
  contains the address;
- numeric host spellings (``2852039166``, ``0x7f.1``, ``127.1``) are read the way the C resolver
  reads them, so they cannot hide an address.

Two steps: :meth:`OutboundPolicy.check_url` when a URL is accepted (admin PUT, start-up): no DNS,
so a broker without network can still be configured; :meth:`OutboundPolicy.check_resolved` right
before a connection: every address the name resolves to must pass. A refused URL is an
:class:`~broker.errors.InvalidInput` naming the field and never echoing the URL (it may carry a
token). Depends on the standard library and :mod:`broker.errors` only, so ``scanners/`` and
``rotation/`` import it without the HTTP layer.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import SplitResult, urlsplit

from broker.errors import InvalidInput

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_URL_LENGTH: Final = 2048
# never reachable, whatever the configuration: metadata services and link-local
ALWAYS_DENIED: Final[tuple[IPNetwork, ...]] = (
    ipaddress.ip_network("169.254.0.0/16"),  # link-local; 169.254.169.254 AWS/GCP/Azure metadata
    ipaddress.ip_network("fe80::/10"),
    ipaddress.ip_network("fd00:ec2::254/128"),  # AWS metadata over IPv6
    ipaddress.ip_network("100.100.100.200/32"),  # Alibaba Cloud metadata
    ipaddress.ip_network("0.0.0.0/8"),
    ipaddress.ip_network("::/128"),
    ipaddress.ip_network("224.0.0.0/4"),
    ipaddress.ip_network("ff00::/8"),
    ipaddress.ip_network("255.255.255.255/32"),
)
METADATA_NAMES: Final = frozenset(
    {"metadata", "metadata.google.internal", "metadata.goog", "instance-data", "instance-data.ec2.internal"}
)
LOOPBACK_NAMES: Final = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
_SSH_USER_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


@dataclass(frozen=True, slots=True)
class OutboundPolicy:
    """Where the broker may connect. ``allow_loopback``: 127.0.0.0/8, ::1 and ``localhost``
    (also over plain http); ``allow_networks``: private ranges the deployment really uses
    (e.g. a VPC's 10.20.0.0/16 for an internal S3 endpoint)."""

    allow_loopback: bool = False
    allow_networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def from_config(cls, allow_loopback: bool, allow_networks: Iterable[str]) -> OutboundPolicy:
        nets: list[IPNetwork] = []
        for raw in allow_networks:
            try:
                net = ipaddress.ip_network(raw, strict=False)
            except ValueError as exc:
                raise ValueError(f'outbound.allow_networks: "{raw}" is not a network (CIDR)') from exc
            if any(net.overlaps(d) for d in ALWAYS_DENIED if d.version == net.version):
                raise ValueError(
                    f'outbound.allow_networks: "{raw}" overlaps link-local, metadata, '
                    "multicast or unspecified addresses, which are never allowed"
                )
            nets.append(net)
        return cls(allow_loopback=allow_loopback, allow_networks=tuple(nets))

    # -- accepting a URL ------------------------------------------------------------------------
    def check_url(self, url: object, *, field: str, schemes: Iterable[str] = ("https",)) -> str:
        """The URL if it may be stored and used; else :class:`InvalidInput` naming ``field``."""
        parts = _parse(url, field)
        allowed = tuple(schemes)
        scheme = parts.scheme.lower()
        host = (parts.hostname or "").rstrip(".").lower()
        if (scheme != "http" and scheme not in allowed) or (scheme == "http" and "https" not in allowed):
            raise InvalidInput(field, f"scheme must be {' or '.join(allowed)}")
        _check_userinfo(parts, scheme, field)
        if not host:
            raise InvalidInput(field, "must name a host")
        address = numeric_address(host)
        if scheme == "http" and not (self.allow_loopback and _loopback_host(host, address)):
            raise InvalidInput(
                field, "must be https:// (plain http:// only to a loopback host when outbound.allow_loopback is on)"
            )
        if host in METADATA_NAMES:
            raise InvalidInput(field, "cloud metadata endpoints are never allowed")
        if address is not None:
            self._check_address(address, field)
        elif host in LOOPBACK_NAMES and not self.allow_loopback:
            raise InvalidInput(field, "loopback hosts are not allowed (outbound.allow_loopback is off)")
        return str(url)

    # -- right before connecting ----------------------------------------------------------------
    def check_resolved(self, url: str, *, field: str, schemes: Iterable[str] = ("https",)) -> None:
        """:meth:`check_url`, then every address the host resolves to must pass too (a public
        name that points at 169.254.169.254 or a private range is refused)."""
        self.check_url(url, field=field, schemes=schemes)
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".")
        try:
            infos = socket.getaddrinfo(host, parts.port or 443, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError) as exc:
            raise InvalidInput(field, "host does not resolve") from exc
        for info in infos:
            self._check_address(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]), field)

    def _check_address(self, address: IPAddress, field: str) -> None:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        if mapped is not None:
            address = mapped
        if any(address in net for net in ALWAYS_DENIED if net.version == address.version):
            raise InvalidInput(field, "link-local, metadata, multicast and unspecified addresses are never allowed")
        if address.is_loopback:
            if not self.allow_loopback:
                raise InvalidInput(field, "loopback addresses are not allowed (outbound.allow_loopback is off)")
            return
        if any(address in net for net in self.allow_networks if net.version == address.version):
            return
        if address.is_private or address.is_reserved or not address.is_global:
            raise InvalidInput(
                field,
                "private and reserved addresses are not allowed unless a network "
                "in outbound.allow_networks contains them",
            )


def numeric_address(host: str) -> IPAddress | None:
    """The address a numeric host denotes, read like the resolver reads it (``127.1``,
    ``0x7f.0.0.1``, ``2852039166`` are addresses too); ``None`` for a name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(bare, None, flags=socket.AI_NUMERICHOST)
    except (OSError, UnicodeError):
        return None
    return ipaddress.ip_address(str(infos[0][4][0]).split("%", 1)[0]) if infos else None


def redact_url(url: str) -> str:
    """The URL without userinfo, query or fragment (for messages and logs)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<invalid url>"
    host = parts.hostname or ""
    port = f":{parts.port}" if _port(parts) else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def _parse(url: object, field: str) -> SplitResult:
    if not isinstance(url, str) or not url:
        raise InvalidInput(field, "must be a URL")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(field, f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(ch) < 0x21 or ord(ch) == 0x7F for ch in url) or not url.isascii():
        raise InvalidInput(field, "must not contain spaces, control or non-ASCII characters")
    try:
        parts = urlsplit(url)
        _port(parts)
    except ValueError as exc:
        raise InvalidInput(field, "is not a valid URL") from exc
    if "\\" in parts.netloc:
        raise InvalidInput(field, "is not a valid URL")
    return parts


def _port(parts: SplitResult) -> int | None:
    return parts.port  # raises ValueError on an out-of-range or non-numeric port


def _check_userinfo(parts: SplitResult, scheme: str, field: str) -> None:
    if "@" not in parts.netloc:
        return
    user, password = parts.username or "", parts.password
    if scheme == "ssh" and password is None and user and set(user) <= _SSH_USER_CHARS and len(user) <= 32:
        return
    raise InvalidInput(
        field,
        "must not carry credentials (user:password@ or a token before @); use the "
        "broker host's credential store (git credential helper, SSH key, AWS chain)",
    )


def _loopback_host(host: str, address: IPAddress | None) -> bool:
    if address is not None:
        mapped = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        return (mapped or address).is_loopback
    return host in LOOPBACK_NAMES


# The checks that hold whatever the deployment configures (scheme, userinfo, metadata and
# link-local addresses): used where a URL is parsed before the settings are at hand (request
# schemas); the configured policy is applied on top when the URL is accepted and when it is used.
SHAPE_ONLY: Final = OutboundPolicy(
    allow_loopback=True,
    allow_networks=(ipaddress.ip_network("0.0.0.0/0"), ipaddress.ip_network("::/0")),
)


def shape_error(url: object, *, schemes: Iterable[str] = ("https",)) -> str | None:
    """For a pydantic validator: the reason ``url`` is refused whatever the configuration, without
    the field name (pydantic adds it), or ``None``."""
    try:
        SHAPE_ONLY.check_url(url, field="url", schemes=schemes)
    except InvalidInput as exc:
        return exc.message.removeprefix("url: ")
    return None


# -- the gateway's upstreams (``http_api`` resources) ---------------------------------------------
# An ``http_api`` upstream must name a loopback host or a host in ``gateway.allowed_hosts`` (then
# over https), with no user info, query, fragment or dot segments: an exact allow-list of names,
# stricter than :class:`OutboundPolicy`'s address ranges, which it keeps.


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
