"""Keys, token factories and a local JWKS server for the identity tests.

Helpers reach the tests as fixtures (``idt.sign(...)``), not imports, so they work under any
pytest import mode and beside other ``conftest.py`` files.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace
from typing import Any

import jwt
import pytest
import structlog
import structlog.testing
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from broker.identity import InMemoryReplayGuard, IssuerConfig

ISSUER = "https://issuer.example.test"
AUDIENCE = "nhi-broker"


def public_pem(private_key: Any) -> str:
    return (
        private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def public_jwk(private_key: Any, kid: str) -> dict[str, Any]:
    public = private_key.public_key()
    if isinstance(public, rsa.RSAPublicKey):
        jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
    elif isinstance(public, ec.EllipticCurvePublicKey):
        jwk = ECAlgorithm.to_jwk(public, as_dict=True)
    else:
        jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
    return {**jwk, "kid": kid, "use": "sig"}


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "sub": "system:serviceaccount:agents:summarizer",
        "aud": AUDIENCE,
        "iat": now,
        "nbf": now,
        "exp": now + 300,
        "jti": uuid.uuid4().hex,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def pem_config(private_key: Any, **overrides: Any) -> IssuerConfig:
    """An IssuerConfig for ``ISSUER``/``AUDIENCE`` trusting ``private_key``'s public half as a PEM."""
    fields: dict[str, Any] = {"issuer": ISSUER, "audiences": (AUDIENCE,)}
    fields["public_key_pem"] = public_pem(private_key)
    fields.update(overrides)
    return IssuerConfig(**fields)


def sign(private_key: Any, alg: str, *, kid: str | None = "k1", **overrides: Any) -> str:
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(claims(**overrides), private_key, algorithm=alg, headers=headers)


@pytest.fixture(scope="session")
def idt() -> SimpleNamespace:
    return SimpleNamespace(
        ISSUER=ISSUER,
        AUDIENCE=AUDIENCE,
        claims=claims,
        sign=sign,
        public_pem=public_pem,
        public_jwk=public_jwk,
        pem_config=pem_config,
    )


@pytest.fixture(scope="session")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def rsa_key_2() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="session")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="session")
def ed_key() -> ed25519.Ed25519PrivateKey:
    return ed25519.Ed25519PrivateKey.generate()


@pytest.fixture(autouse=True)
def captured_logs() -> Iterator[list[dict[str, Any]]]:
    """Log events of the test, captured: isolates these tests from whatever logging another test
    configured, and lets them check what the identity module logs."""
    with structlog.testing.capture_logs() as events:
        yield events


@pytest.fixture
def replay_guard() -> InMemoryReplayGuard:
    return InMemoryReplayGuard()


@dataclass
class JwksServer:
    """Serves ``jwks`` at ``url``; counts requests; ``status`` other than 200 simulates an outage;
    ``hold`` (when set) makes each answer wait until the test sets the event: a slow server."""

    url: str
    jwks: dict[str, Any]
    status: int = 200
    delay: float = 0.0
    hold: threading.Event | None = None
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def jwks_server() -> Iterator[JwksServer]:
    state = JwksServer(url="", jwks={"keys": []})

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
                status, body, delay, hold = state.status, json.dumps(state.jwks).encode(), state.delay, state.hold
            time.sleep(delay)
            if hold is not None:
                hold.wait(timeout=120)
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/.well-known/jwks.json"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=60)


@pytest.fixture
def fake_clock() -> Callable[..., float]:
    """A monotonic clock tests advance by hand: ``clock()`` reads, ``clock.advance(s)`` moves it."""

    class Clock:
        def __init__(self) -> None:
            self.now = 1000.0

        def __call__(self) -> float:
            return self.now

        def advance(self, seconds: float) -> None:
            self.now += seconds

    return Clock()
