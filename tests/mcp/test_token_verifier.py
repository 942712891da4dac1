"""The MCP HTTP server's token check (``BrokerTokenVerifier``), on tokens signed by a broker key:
only ES256 ``at+jwt`` tokens of the broker, for this server's audience, unexpired and not
sender-constrained. The broker's JWKS is served by an in-memory transport here; the same verifier
against a real broker is tests/mcp/test_mcp_http.py."""

from __future__ import annotations

import time

import httpx
import jwt
import pytest

from broker.agent_mcp import BrokerTokenVerifier
from broker.identity.access_tokens import BrokerSigningKey

ISSUER = "http://broker.test"
RESOURCE = "http://mcp.test/mcp"


@pytest.fixture
def key(tmp_path) -> BrokerSigningKey:
    return BrokerSigningKey.load_or_create(tmp_path / "signing.pem")


@pytest.fixture
def verifier(key) -> BrokerTokenVerifier:
    transport = httpx.MockTransport(lambda request: httpx.Response(200, json=key.jwks()))
    return BrokerTokenVerifier(httpx.Client(base_url=ISSUER, transport=transport), issuer=ISSUER, resource=RESOURCE)


def _claims(**change) -> dict:
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": RESOURCE, "sub": "agent:demo", "agent": "demo", "jti": "at_1"}
    claims |= {"iat": now, "nbf": now, "exp": now + 300}
    return {k: v for k, v in {**claims, **change}.items() if v is not None}


def test_a_broker_token_for_this_server_is_accepted_as_its_agent(key, verifier):
    token = verifier.check(key.sign(_claims()))
    assert token is not None and token.client_id == "demo" and token.subject == "agent:demo"
    assert token.resource == RESOURCE and token.claims == {"iss": ISSUER, "agent": "demo", "jti": "at_1"}


@pytest.mark.parametrize(
    "change",
    [
        {"aud": ISSUER},  # a broker-audience token
        {"aud": "http://other.test/mcp"},  # another MCP server's
        {"iss": "http://evil.test"},
        {"exp": int(time.time()) - 120},
        {"cnf": {"jkt": "abc"}},  # DPoP-bound: not a bearer token for an MCP client
        {"agent": None},
    ],
)
def test_a_token_not_for_this_server_is_refused(key, verifier, change):
    assert verifier.check(key.sign(_claims(**change))) is None


def test_a_token_signed_by_another_key_or_algorithm_is_refused(key, verifier, tmp_path):
    other = BrokerSigningKey.load_or_create(tmp_path / "other.pem")
    assert verifier.check(other.sign(_claims())) is None  # unknown kid
    forged = jwt.encode(_claims(), "s" * 32, algorithm="HS256", headers={"kid": key.kid, "typ": "at+jwt"})
    assert verifier.check(forged) is None
    unsigned = jwt.encode(_claims(), None, algorithm="none", headers={"kid": key.kid, "typ": "at+jwt"})
    assert verifier.check(unsigned) is None
    assert verifier.check("not-a-jwt") is None


def test_unreachable_broker_keys_refuse_every_token(key):
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("down", request=request)

    offline = BrokerTokenVerifier(
        httpx.Client(base_url=ISSUER, transport=httpx.MockTransport(down)), issuer=ISSUER, resource=RESOURCE
    )
    assert offline.check(key.sign(_claims())) is None
