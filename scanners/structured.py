"""Structured and path-aware detectors: secrets whose meaning comes from the file's shape.

A regex over one line cannot tell that ``password: cGFzc3dvcmQ=`` is a Kubernetes Secret's
base64 value, that ``password = ...`` in ``.pypirc`` is an index credential, or that a ``.p12``
holds a private key. These detectors read the structure (manifest, INI, XML, JSON, netrc tokens,
DER containers) and report the credential with high confidence. Each returns :class:`Detection`
spans in character offsets; binary containers are judged from their bytes.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from scanners.checksums import WELL_KNOWN_EXAMPLES
from scanners.rules import Confidence, Severity


@dataclass(frozen=True, slots=True)
class Detection:
    rule_id: str
    description: str
    severity: Severity
    confidence: Confidence
    start: int
    end: int


# values that are references or placeholders, never the credential itself
_PLACEHOLDER: Final = re.compile(
    r"^(?:\$\{?\w+\}?|\$\(\w+\)|%\w+%|%\(\w+\)s|\{\{.*\}\}|<[^>]*>|\*+|x{4,}|\.\.\.|null|none|true|false|"
    r"changeme|password|secret|example\w*|your[_-]?\w*)$",
    re.I,
)


def _is_value(v: str) -> bool:
    v = v.strip().strip("'\"`")
    return (
        len(v) >= 4
        and not _PLACEHOLDER.match(v)
        and "${" not in v
        and "{{" not in v
        and v.lower() not in WELL_KNOWN_EXAMPLES
    )


def _b64_text(v: str) -> str | None:
    """Decoded base64 when it is UTF-8 text; None when it is not base64 or not text."""
    try:
        raw = base64.b64decode(v, validate=True)
    except (binascii.Error, ValueError):
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _basename(path: str | None) -> str:
    return (path or "").replace("\\", "/").rsplit("/", 1)[-1].lower()


# -- Kubernetes Secret manifests -------------------------------------------------------------
_K8S_KIND: Final = re.compile(r"(?m)^kind:\s*[\"']?Secret[\"']?\s*$")
_K8S_BLOCK: Final = re.compile(r"(?m)^(data|stringData):[ \t]*\n((?:[ \t]+.*\n?|[ \t]*\n)*)")
_K8S_ENTRY: Final = re.compile(r"(?m)^[ \t]+([\w.-]+):[ \t]*[\"']?([^\s\"'#]+)[\"']?[ \t]*$")
_NOT_SECRET_KEYS: Final = re.compile(r"(?:\.crt|\.pem|ca\.crt|ca-bundle|username|user|host|port|namespace)$", re.I)


def kubernetes_secret(text: str, path: str | None) -> list[Detection]:
    out: list[Detection] = []
    if "kind:" not in text or "Secret" not in text or not _K8S_KIND.search(text):
        return out
    docs = re.split(r"(?m)^---[ \t]*$", text)
    offset = 0
    for doc in docs:
        if _K8S_KIND.search(doc):
            for block in _K8S_BLOCK.finditer(doc):
                encoded = block.group(1) == "data"
                # the keys are the block's first indentation level; deeper lines belong to a
                # multi-line value (a config file in `stringData: {app.yaml: |}`), not keys
                indents = [len(line) - len(line.lstrip()) for line in block.group(2).splitlines() if line.strip()]
                top = min(indents, default=0)
                for m in _K8S_ENTRY.finditer(block.group(2)):
                    key, value = m.group(1), m.group(2)
                    if len(m.group(0)) - len(m.group(0).lstrip()) != top:
                        continue
                    if _NOT_SECRET_KEYS.search(key) or not _is_value(value):
                        continue
                    decoded = _b64_text(value) if encoded else value
                    if decoded is None or not _is_value(decoded) or decoded.startswith("-----BEGIN CERTIFICATE"):
                        continue
                    s = offset + block.start(2) + m.start(2)
                    out.append(
                        Detection(
                            "kubernetes-secret-data",
                            "Kubernetes Secret value (base64 data decoded)"
                            if encoded
                            else "Kubernetes Secret stringData value",
                            Severity.HIGH,
                            Confidence.HIGH,
                            s,
                            s + len(value),
                        )
                    )
        offset += len(doc) + 3  # the '---' separator
    return out


# -- package manager and tool config files ---------------------------------------------------
_NPMRC: Final = re.compile(r"(?m)^[ \t]*(?://[^\s=]*?)?:?_(authToken|auth|password)[ \t]*=[ \t]*[\"']?([^\s\"']+)")
_PYPIRC_PW: Final = re.compile(r"(?m)^[ \t]*password[ \t]*[=:][ \t]*(\S+)[ \t]*$")
_NUGET: Final = re.compile(r"<add\s+key=\"((?:ClearText)?Password)\"\s+value=\"([^\"]+)\"", re.I)
_NETRC_TOKEN: Final = re.compile(r"\b(password|passwd|account)\s+(\S+)")
_DOCKER_AUTH: Final = re.compile(r"\"(auth|identitytoken|password)\"\s*:\s*\"([^\"]{8,})\"")
_CURL_USER: Final = re.compile(
    r"\bcurl\b[^\n]*?\s(?:-u|--user)(?:=|[ \t]+)"
    r"(?:\"([^\"\s:]+):([^\"\s]+)\"|'([^'\s:]+):([^'\s]+)'|([^\s:\"']+):(\S+))"
)
_CURL_HEADER: Final = re.compile(
    r"\bcurl\b[^\n]*?\s(?:-H|--header)(?:=|[ \t]+)[\"']"
    r"(?:(?i:authorization):[ \t]*(?:(?i:basic|bearer|token|apikey)[ \t]+)?|(?i:x-[\w-]*(?:key|token)|api-key):[ \t]*)"
    r"([A-Za-z0-9._~+/=:-]{8,})[\"']"
)


def npmrc(text: str, path: str | None) -> list[Detection]:
    if "_authToken" not in text and "_auth=" not in text and "_auth =" not in text and "_password" not in text:
        return []
    out = []
    for m in _NPMRC.finditer(text):
        if _is_value(m.group(2)):
            out.append(
                Detection(
                    "npmrc-auth",
                    f".npmrc _{m.group(1)} credential",
                    Severity.HIGH,
                    Confidence.HIGH,
                    m.start(2),
                    m.end(2),
                )
            )
    return out


def pypirc(text: str, path: str | None) -> list[Detection]:
    if _basename(path) != ".pypirc":
        return []
    return [
        Detection(
            "pypirc-password", ".pypirc index password or token", Severity.HIGH, Confidence.HIGH, m.start(1), m.end(1)
        )
        for m in _PYPIRC_PW.finditer(text)
        if _is_value(m.group(1))
    ]


def nuget_config(text: str, path: str | None) -> list[Detection]:
    if "assword" not in text:
        return []
    out = []
    for m in _NUGET.finditer(text):
        if _is_value(m.group(2)):
            clear = m.group(1).lower().startswith("cleartext")
            out.append(
                Detection(
                    "nuget-config-password",
                    "NuGet package source password",
                    Severity.HIGH,
                    Confidence.HIGH if clear else Confidence.MEDIUM,
                    m.start(2),
                    m.end(2),
                )
            )
    return out


def netrc(text: str, path: str | None) -> list[Detection]:
    if _basename(path) not in (".netrc", "_netrc"):
        return []
    return [
        Detection("netrc-password", ".netrc password", Severity.HIGH, Confidence.HIGH, m.start(2), m.end(2))
        for m in _NETRC_TOKEN.finditer(text)
        if m.group(1) != "account" and _is_value(m.group(2))
    ]


def docker_config(text: str, path: str | None) -> list[Detection]:
    name = _basename(path)
    if name not in ("config.json", ".dockercfg", ".dockerconfigjson") and '"auths"' not in text:
        return []
    out = []
    for m in _DOCKER_AUTH.finditer(text):
        kind, value = m.group(1), m.group(2)
        if kind == "auth":
            decoded = _b64_text(value)
            if decoded is None or ":" not in decoded or not _is_value(decoded.split(":", 1)[1]):
                continue
        elif not _is_value(value):
            continue
        out.append(
            Detection(
                "docker-config-auth",
                f"Docker registry credential ({kind})",
                Severity.HIGH,
                Confidence.HIGH,
                m.start(2),
                m.end(2),
            )
        )
    return out


def _curl_lines(text: str) -> list[tuple[int, int]]:
    spans = []
    pos = text.find("curl")
    while pos >= 0:
        ls = text.rfind("\n", 0, pos) + 1
        le = text.find("\n", pos)
        le = len(text) if le < 0 else le
        spans.append((ls, le))
        pos = text.find("curl", le)
    return spans


def curl_command(text: str, path: str | None) -> list[Detection]:
    if "curl" not in text:
        return []
    out: list[Detection] = []
    for ls, le in _curl_lines(text):
        out.extend(_curl_line(text, ls, le))
    return out


def _curl_line(text: str, ls: int, le: int) -> list[Detection]:
    out = []
    for m in _CURL_USER.finditer(text, ls, le):
        grp = 2 if m.group(2) else 4 if m.group(4) else 6
        pw = m.group(grp).rstrip("`'\"")
        if _is_value(pw) and not pw.startswith("$"):
            out.append(
                Detection(
                    "curl-user-password",
                    "Password on a curl command line (-u user:password)",
                    Severity.HIGH,
                    Confidence.MEDIUM,
                    m.start(grp),
                    m.start(grp) + len(pw),
                )
            )
    for m in _CURL_HEADER.finditer(text, ls, le):
        if _is_value(m.group(1)) and not m.group(1).startswith("$"):
            out.append(
                Detection(
                    "curl-auth-header",
                    "Credential in a curl -H header",
                    Severity.HIGH,
                    Confidence.MEDIUM,
                    m.start(1),
                    m.end(1),
                )
            )
    return out


TEXT_DETECTORS: Final[tuple[Callable[[str, str | None], list[Detection]], ...]] = (
    kubernetes_secret,
    npmrc,
    pypirc,
    nuget_config,
    netrc,
    docker_config,
    curl_command,
)


def detect_text(text: str, path: str | None) -> list[Detection]:
    out: list[Detection] = []
    for detector in TEXT_DETECTORS:
        out.extend(detector(text, path))
    return out


# -- binary containers: PKCS#12 and DER private keys -----------------------------------------
_PKCS7_DATA_OID: Final = bytes.fromhex("06092a864886f70d010701")  # 1.2.840.113549.1.7.1
KEY_CONTAINER_SUFFIXES: Final = (".p12", ".pfx", ".key", ".der", ".jks", ".keystore")


def _der_version(data: bytes) -> int | None:
    """The INTEGER right after the outer SEQUENCE header (PFX version is 3)."""
    first = data[1]
    pos = 2 + (first & 0x7F if first & 0x80 else 0)
    if data[pos : pos + 2] != b"\x02\x01":
        return None
    return data[pos + 2]


def detect_binary(data: bytes, path: str | None) -> list[Detection]:
    """Key containers judged by content (suffix only narrows which files are read)."""
    name = _basename(path)
    if not name.endswith(KEY_CONTAINER_SUFFIXES) or len(data) < 32:
        return []
    if data[0] == 0x30 and _PKCS7_DATA_OID in data[:64] and _der_version(data) == 3:
        return [
            Detection(
                "pkcs12-file", "PKCS#12 keystore (private key and certificate)", Severity.HIGH, Confidence.HIGH, 0, 0
            )
        ]
    if data[:4] == b"\xfe\xed\xfe\xed":
        return [Detection("java-keystore-file", "Java keystore (JKS)", Severity.HIGH, Confidence.MEDIUM, 0, 0)]
    if data[0] == 0x30:
        # deferred: cryptography's DER parser loads only for a binary that looks like one
        from cryptography.hazmat.primitives.serialization import load_der_private_key

        try:
            load_der_private_key(data, password=None)
        except (ValueError, TypeError):
            return []
        return [
            Detection("der-private-key-file", "Unencrypted DER private key", Severity.CRITICAL, Confidence.HIGH, 0, 0)
        ]
    return []
