"""Synthetic secrets for tests, corpora and benchmarks — never a real credential.

Templates expand ``%{kind:arg}`` markers with random, well-formed fake values::

    %{hex:40} %{HEX:16} %{b62:30} %{b64:40} %{b64u:43} %{alpha:34} %{lower:8} %{upper:12}
    %{digits:10} %{lowernum:52} %{uppernum:26} %{b32:16} %{bech32:58} %{uuid}
    %{gh:ghp_}        GitHub/npm-style token with a valid CRC32 tail
    %{jwt}            a structurally valid (unsigned-by-anyone) JWT
    %{pem:RSA PRIVATE KEY}   PEM block; %{pemesc:PRIVATE KEY} the same with literal \\n (JSON)
    %{azkey}          base64 of 64 random bytes
    %{b64creds}       base64 of ``user:password`` (HTTP Basic, .npmrc ``_auth``, docker ``auth``)
    %{b64pw:20}       base64 of a random 20-character password (Kubernetes Secret ``data:``)
    %{b64of:TEXT}     base64 of TEXT (a non-secret value encoded the same way)
    %{jwtb64}         a JWT, base64-encoded again (as some configs store it)

Secrets are built at run time, so the repository holds templates, not tokens.
"""

from __future__ import annotations

import base64
import json
import random
import re
import string
from collections.abc import Callable
from typing import Final

from scanners.checksums import crc32_base62

_ALPHABETS: Final = {
    "hex": "0123456789abcdef",
    "HEX": "0123456789ABCDEF",
    "b62": string.ascii_letters + string.digits,
    "b64": string.ascii_letters + string.digits + "+/",
    "b64u": string.ascii_letters + string.digits + "_-",
    "alpha": string.ascii_letters,
    "lower": string.ascii_lowercase,
    "upper": string.ascii_uppercase,
    "digits": string.digits,
    "lowernum": string.ascii_lowercase + string.digits,
    "uppernum": string.ascii_uppercase + string.digits,
    "b32": string.ascii_uppercase + "234567",
    "bech32": "QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L",
}
_MARK: Final = re.compile(r"%\{(\w+)(?::([^}]*))?\}")


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def github_token(rng: random.Random, prefix: str) -> str:
    body = rand(rng, _ALPHABETS["b62"], 30)
    return prefix + body + crc32_base62(body)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def jwt(rng: random.Random) -> str:
    header = _b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": rand(rng, "abcdef0123", 8)}).encode())
    payload = _b64url(
        json.dumps({"sub": rand(rng, "abcdefghij", 10), "iat": rng.randint(1, 2**31), "aud": "nhi-broker"}).encode()
    )
    return f"{header}.{payload}.{_b64url(rng.randbytes(64))}"


def pem(rng: random.Random, label: str, newline: str = "\n") -> str:
    body = base64.b64encode(rng.randbytes(600)).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return newline.join([f"-----BEGIN {label}-----", *lines, f"-----END {label}-----"])


def _gen(rng: random.Random, kind: str, arg: str | None) -> str:
    if kind in _ALPHABETS:
        return rand(rng, _ALPHABETS[kind], int(arg or "32"))
    special: dict[str, Callable[[], str]] = {
        "uuid": lambda: "-".join(rand(rng, _ALPHABETS["hex"], n) for n in (8, 4, 4, 4, 12)),
        "gh": lambda: github_token(rng, arg or "ghp_"),
        "jwt": lambda: jwt(rng),
        "pem": lambda: pem(rng, arg or "PRIVATE KEY"),
        "pemesc": lambda: pem(rng, arg or "PRIVATE KEY", "\\n") + "\\n",
        "azkey": lambda: base64.b64encode(rng.randbytes(64)).decode(),
        "b64creds": lambda: _b64(f"{rand(rng, _ALPHABETS['lower'], 8)}:{rand(rng, _ALPHABETS['b62'], 18)}"),
        "b64pw": lambda: _b64(rand(rng, _ALPHABETS["b62"], int(arg or "20"))),
        "b64of": lambda: _b64(arg or ""),
        "jwtb64": lambda: _b64(jwt(rng)),
    }
    if kind not in special:
        raise ValueError(f"template kind {kind!r} is not one of {sorted([*_ALPHABETS, *special])}")
    return special[kind]()


def expand(template: str, rng: random.Random) -> tuple[str, list[tuple[int, int]]]:
    """Expand markers; ``[[...]]`` marks the expected secret spans, returned without the brackets."""
    text = _MARK.sub(lambda m: _gen(rng, m.group(1), m.group(2)), template)
    spans: list[tuple[int, int]] = []
    out: list[str] = []
    pos = 0
    for m in re.finditer(r"\[\[(.*?)\]\]", text, re.S):
        out.append(text[pos : m.start()])
        start = sum(len(p) for p in out)
        out.append(m.group(1))
        spans.append((start, start + len(m.group(1))))
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), spans
